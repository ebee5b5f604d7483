//go:build tools

// Package deps pins the libraries of the standalone half (the docker CLI's
// command tree, compose v5, BuildKit's Dockerfile parser, .dockerignore
// patterns, DNS and NRI) in go.mod before the
// code that imports them lands, so that every branch builds on one module
// graph. It never builds (tag tools); delete a line once a package of Berth
// imports that library.
package deps

import (
	_ "github.com/containerd/nri/pkg/adaptation"
)

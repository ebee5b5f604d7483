// Command critest-images builds the stand-ins of every image critest v1.37.0
// pulls (internal/testimage.CritestImages) and pushes each under its upstream
// path without the host, so that a hosts.toml mirror for registry.k8s.io,
// k8s.gcr.io, gcr.io and public.ecr.aws pointing at the registry serves them:
//
//	go run ./hack/critest-images --registry 127.0.0.1:5000 \
//	    --busybox DIR/bin/busybox --nnp BIN --pause BIN [--images-file FILE]
//
// registry.k8s.io/pause:3.9 is pushed as 127.0.0.1:5000/pause:3.9. The
// busybox must be Debian's dynamic one and nnp/pause static Go programs
// (hack/critest-images/nnp, hack/critest-images/pause); hack/critest.sh
// fetches and builds them. --images-file writes critest's
// --test-images-file. It prints each upstream reference with its digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-dev/berth/internal/testimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "critest-images:", err)
		os.Exit(1)
	}
}

func run() error {
	reg := flag.String("registry", "127.0.0.1:5000", "registry host:port to push to")
	var parts testimage.CritestParts
	flag.StringVar(&parts.Busybox, "busybox", "", "Debian's dynamically linked busybox binary")
	flag.StringVar(&parts.Ipcs, "ipcs", "/usr/bin/ipcs", "util-linux ipcs binary")
	flag.StringVar(&parts.NoNewPrivs, "nnp", "", "static setuid test program (hack/critest-images/nnp)")
	flag.StringVar(&parts.Pause, "pause", "", "static pause program (hack/critest-images/pause)")
	imagesFile := flag.String("images-file", "", "also write critest's --test-images-file here")
	flag.Parse()
	if parts.Busybox == "" || parts.NoNewPrivs == "" || parts.Pause == "" {
		return fmt.Errorf("--busybox, --nnp and --pause are required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	imgs, err := testimage.CritestImages(parts)
	if err != nil {
		return err
	}
	for _, ci := range imgs {
		d, err := ci.Image.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", ci.Refs[0], err)
		}
		for _, ref := range ci.Refs {
			local, err := mirrored(*reg, ref)
			if err != nil {
				return err
			}
			if err := testimage.Push(ctx, ci.Image, local); err != nil {
				return err
			}
			fmt.Printf("%s@%s\n", ref, d)
		}
	}
	if *imagesFile != "" {
		data := fmt.Sprintf("defaultTestContainerImage: %s\nwebServerTestImage: %s\n",
			testimage.CritestDefaultImage, testimage.CritestWebServerImage)
		if err := os.WriteFile(*imagesFile, []byte(data), 0o644); err != nil {
			return fmt.Errorf("write images file: %w", err)
		}
	}
	return nil
}

// mirrored maps an upstream reference to the same path and tag on reg, as a
// hosts.toml mirror resolves it.
func mirrored(reg, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", ref, err)
	}
	return fmt.Sprintf("%s/%s:%s", reg, r.Context().RepositoryStr(), r.Identifier()), nil
}

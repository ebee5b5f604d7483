package cni

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// classify wraps a libcni or plugin error into an errdefs class, keeping
// the plugin's message (plugins answer failures with a JSON error whose
// code says whose fault it is).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var perr *types.Error
	if !errors.As(err, &perr) {
		return fmt.Errorf("%w: %w", errdefs.ErrUnknown, err)
	}
	switch perr.Code {
	case types.ErrIncompatibleCNIVersion, types.ErrPluginNotAvailable:
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case types.ErrUnsupportedField, types.ErrInvalidEnvironmentVariables,
		types.ErrDecodingFailure, types.ErrInvalidNetworkConfig, types.ErrInvalidNetNS:
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	case types.ErrUnknownContainer:
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case types.ErrTryAgainLater:
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w", errdefs.ErrUnknown, err)
}

// findPlugins checks that every plugin type is in binDirs before anything
// runs: libcni's own "failed to find plugin" error carries no class, and a
// list that fails half-way would need a rollback for nothing.
func findPlugins(binDirs []string, pluginTypes ...string) error {
	for _, t := range pluginTypes {
		if _, err := invoke.FindInPath(t, binDirs); err != nil {
			return fmt.Errorf("cni plugin %q not found in %s: %w", t, strings.Join(binDirs, ":"), errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

package imagestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads the image named ref to the registry of ref, trying the
// hosts with the "push" capability in order.
func (s *Store) Push(ctx context.Context, ref string, opts PushOptions) error {
	named, err := parseRef(ref)
	if err != nil {
		return err
	}
	if err := s.push(ctx, ref, opts); err != nil {
		return fmt.Errorf("push %s: %w", named, err)
	}
	return nil
}

func (s *Store) push(ctx context.Context, ref string, opts PushOptions) error {
	named, _ := parseRef(ref)
	progress := serialProgress(opts.Progress)
	r, err := s.resolve(ctx, ref)
	if err != nil {
		return err
	}
	for _, l := range r.Layers {
		if err := s.layerBlob(ctx, l); err != nil {
			return err
		}
	}
	img, err := s.v1Image(r.Image)
	if err != nil {
		return err
	}
	eps, err := s.endpoints(named, "push")
	if err != nil {
		return err
	}
	for _, l := range r.Layers {
		progress(Progress{ID: shortID(l.Digest), Status: "Preparing"})
	}
	var errs []error
	for _, ep := range eps {
		target, err := ep.ref(named)
		if err != nil {
			return err
		}
		ropts, err := s.remoteOptions(ctx, ep, opts.Auth)
		if err != nil {
			return err
		}
		updates := make(chan v1.Update, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range updates {
				progress(Progress{ID: refTagOrDigest(named), Status: "Pushing", Current: u.Complete, Total: u.Total})
			}
		}()
		err = remote.Write(target, img, append(ropts, remote.WithProgress(updates))...)
		<-done
		if err == nil {
			for _, l := range r.Layers {
				progress(Progress{ID: shortID(l.Digest), Status: "Pushed"})
			}
			progress(Progress{ID: refTagOrDigest(named), Status: fmt.Sprintf("%s: digest: %s size: %d", refTagOrDigest(named), r.ManifestDigest, r.Size)})
			return nil
		}
		err = classifyRemote(err)
		if ctx.Err() != nil || errdefs.IsUnauthorized(err) {
			return err
		}
		errs = append(errs, fmt.Errorf("to %s: %w", ep.Host, err))
	}
	return errors.Join(errs...)
}

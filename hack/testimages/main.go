// Command testimages builds Berth's test images (internal/testimage) and
// pushes them to a registry:
//
//	go run ./hack/testimages --registry 127.0.0.1:5000 [--big-mb 64 --big-layers 8] [--only busybox,big]
//
// pushes <registry>/berth/{busybox,whiteouts,nonroot,big}:latest and prints
// each reference with its manifest digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/testimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

type builder struct {
	name  string
	build func() (v1.Image, error)
}

func run() error {
	reg := flag.String("registry", "127.0.0.1:5000", "registry host[:port] to push to")
	repo := flag.String("repo", "berth", "repository prefix under the registry")
	bigMB := flag.Int("big-mb", 64, "size of the big image's data in MiB")
	bigLayers := flag.Int("big-layers", 8, "number of data layers of the big image")
	only := flag.String("only", "", "comma-separated subset of busybox,whiteouts,nonroot,big")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	builders := []builder{
		{"busybox", testimage.Busybox},
		{"whiteouts", testimage.Whiteouts},
		{"nonroot", testimage.NonRoot},
		{"big", func() (v1.Image, error) { return testimage.Big(*bigMB, *bigLayers) }},
	}
	var want []string
	if *only != "" {
		want = strings.Split(*only, ",")
		for _, w := range want {
			if !slices.ContainsFunc(builders, func(b builder) bool { return b.name == w }) {
				return fmt.Errorf("unknown image %q in --only", w)
			}
		}
	}
	for _, b := range builders {
		if want != nil && !slices.Contains(want, b.name) {
			continue
		}
		img, err := b.build()
		if err != nil {
			return fmt.Errorf("build %s: %w", b.name, err)
		}
		ref := fmt.Sprintf("%s/%s/%s:latest", *reg, *repo, b.name)
		if err := testimage.Push(ctx, img, ref); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", b.name, err)
		}
		fmt.Printf("pushed %s@%s\n", ref, d)
	}
	return nil
}

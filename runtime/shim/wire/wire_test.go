package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/containerd/errdefs"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	frames := []struct {
		kind    byte
		payload []byte
	}{
		{FrameStdout, []byte("hello")},
		{FrameCloseStdin, nil},
		{FrameResize, ResizePayload(Size{Width: 120, Height: 40})},
	}
	for _, f := range frames {
		if err := WriteFrame(&buf, f.kind, f.payload); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range frames {
		kind, p, err := ReadFrame(&buf)
		if err != nil || kind != f.kind || !bytes.Equal(p, f.payload) && len(f.payload) > 0 {
			t.Fatalf("frame = %d %q %v, want %d %q", kind, p, err, f.kind, f.payload)
		}
	}
	if _, _, err := ReadFrame(&buf); err != io.EOF {
		t.Fatalf("read past the end = %v, want EOF", err)
	}
	s, err := ParseResize(ResizePayload(Size{Width: 120, Height: 40}))
	if err != nil || s != (Size{Width: 120, Height: 40}) {
		t.Fatalf("resize round trip = %+v, %v", s, err)
	}
}

func TestFrameLimits(t *testing.T) {
	if err := WriteFrame(io.Discard, FrameStdout, make([]byte, MaxFrame+1)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("oversized write = %v", err)
	}
	hdr := []byte{FrameStdout, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := ReadFrame(bytes.NewReader(hdr)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("oversized read = %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{FrameStdout, 0, 0, 0, 9, 'x'})); err == nil {
		t.Fatal("truncated payload accepted")
	}
}

func TestErrorClassesSurviveTheWire(t *testing.T) {
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrFailedPrecondition, errdefs.ErrInvalidArgument, errdefs.ErrUnavailable, errdefs.ErrNotImplemented} {
		orig := fmt.Errorf("signal container x: %w", class)
		got := Error(orig.Error(), Class(orig))
		if !errors.Is(got, class) || got.Error() != orig.Error() {
			t.Errorf("%v came back as %v (class %v)", orig, got, errors.Is(got, class))
		}
	}
	if got := Error("plain", Class(errors.New("plain"))); got.Error() != "plain" || errdefs.IsNotFound(got) {
		t.Errorf("unclassified error came back as %v", got)
	}
}

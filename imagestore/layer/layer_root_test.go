package layer

import (
	"archive/tar"
	"bytes"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestUnpackRootDu checks the recorded usage against du for a layer with
// what only root can unpack: whiteouts, opaque dirs, devices, owners.
func TestUnpackRootDu(t *testing.T) {
	testutil.RequireRoot(t, "whiteouts, device nodes and chown")
	s, _ := open(t)
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg},
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 1000, Gid: 1000},
		{Name: "usr/.wh..wh..opq", Typeflag: tar.TypeReg},
		{Name: "usr/big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 100000, Uid: 1000},
		{Name: "usr/big2", Typeflag: tar.TypeLink, Linkname: "usr/big"},
		{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
	} {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte{'z'}, int(h.Size)))
		}
	}
	tw.Close()
	info, err := s.Unpack(t.Context(), chain("root"), digest.FromBytes(plain.Bytes()), bytes.NewReader(plain.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	// fs, etc, etc/passwd (whiteout), usr, usr/big, dev, dev/null, lib
	if info.Inodes != 8 {
		t.Errorf("inodes = %d, want 8", info.Inodes)
	}
	testutil.CheckDu(t, s.Dir(chain("root")), info.Size, info.Inodes)
}

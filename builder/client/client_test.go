package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s")
	os.WriteFile(file, []byte("from-file"), 0o600)
	env := map[string]string{"TOKEN": "from-env", "db": "db-env"}
	getenv := func(k string) string { return env[k] }
	for spec, want := range map[string]string{
		"id=a,src=" + file:           "from-file",
		"id=a,source=" + file:        "from-file",
		"id=a,type=file,src=" + file: "from-file",
		"id=a,env=TOKEN":             "from-env",
		"id=a,type=env,src=TOKEN":    "from-env",
		"id=db":                      "db-env",
	} {
		s, err := ParseSecret(spec, getenv)
		if err != nil || string(s.Value) != want {
			t.Errorf("%s: %q %v, want %q", spec, s.Value, err, want)
		}
	}
	for _, bad := range []string{"src=" + file, "id=a,src=/nonexistent", "id=a,env=UNSET", "id=a,bogus=1", "id=a,src=x,env=y", "id=a,type=ssh", "nokv"} {
		if _, err := ParseSecret(bad, getenv); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, make([]byte, maxSecret+1), 0o600)
	if _, err := ParseSecret("id=big,src="+big, getenv); err == nil {
		t.Error("a secret over the limit was taken")
	}
}

func stream(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// The classic stream becomes BuildKit's plain format, CACHED per cached
// step, and the aux ID is the result.
func TestProgressPlain(t *testing.T) {
	in := stream(
		`{"stream":"Step 1/3 : FROM busybox\n"}`,
		`{"stream":" ---\u003e 0123456789ab\n"}`,
		`{"stream":"Step 2/3 : RUN echo hi\n"}`,
		`{"stream":" ---\u003e Running in abc\n"}`,
		`{"stream":"hi\n"}`,
		`{"stream":"Removing intermediate container abc\n"}`,
		`{"stream":" ---\u003e 1111\n"}`,
		`{"stream":"Step 3/3 : COPY . /app\n"}`,
		`{"stream":" ---\u003e Using cache\n"}`,
		`{"stream":" ---\u003e 2222\n"}`,
		`{"aux":{"ID":"sha256:feed"}}`,
		`{"stream":"Successfully built feed\n"}`,
		`{"stream":"Successfully tagged app:1\n"}`,
	)
	var out strings.Builder
	p := NewProgress(&out, ModePlain)
	p.now = func() time.Time { return time.Unix(0, 0) }
	id, err := p.Read(strings.NewReader(in))
	if err != nil || id != "sha256:feed" {
		t.Fatalf("id %q err %v", id, err)
	}
	want := "#1 [1/3] FROM busybox\n#1 DONE 0.0s\n#2 [2/3] RUN echo hi\n#2 0.000 hi\n#2 DONE 0.0s\n#3 [3/3] COPY . /app\n#3 CACHED\n#4 naming to app:1 done\n"
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	// An error ends the build with the daemon's message.
	out.Reset()
	_, err = NewProgress(&out, ModePlain).Read(strings.NewReader(stream(`{"stream":"Step 1/1 : RUN false\n"}`, `{"errorDetail":{"message":"Dockerfile:1: exit code: 1"},"error":"Dockerfile:1: exit code: 1"}`)))
	if err == nil || err.Error() != "Dockerfile:1: exit code: 1" || !strings.Contains(out.String(), "#1 ERROR") {
		t.Fatalf("error: %v\n%s", err, out.String())
	}
	// Quiet: the one stream line is the ID.
	id, err = NewProgress(&out, ModeQuiet).Read(strings.NewReader(stream(`{"stream":"sha256:abcd\n"}`)))
	if err != nil || id != "sha256:abcd" {
		t.Fatalf("quiet: %q %v", id, err)
	}
}

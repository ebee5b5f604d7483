package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
)

func TestSince(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ago  time.Duration
		want string
	}{
		{30 * time.Second, "30 seconds ago"},
		{70 * time.Second, "About a minute ago"},
		{3 * time.Minute, "3 minutes ago"},
		{65 * time.Minute, "About an hour ago"}, {90 * time.Minute, "2 hours ago"},
		{5 * time.Hour, "5 hours ago"},
		{3 * 24 * time.Hour, "3 days ago"},
		{60 * 24 * time.Hour, "2 months ago"},
		{3 * 365 * 24 * time.Hour, "3 years ago"},
	} {
		if got := since(now.Add(-tc.ago), now); got != tc.want {
			t.Errorf("since(-%v) = %q, want %q", tc.ago, got, tc.want)
		}
	}
	// Like docker: an image built with SOURCE_DATE_EPOCH=0 is 56 years old.
	if got := since(time.Unix(0, 0), now); got != "56 years ago" {
		t.Errorf("since(epoch) = %q", got)
	}
	if got := since(time.Time{}, now); got != "N/A" {
		t.Errorf("since(zero) = %q", got)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 4_261_000: "4.26MB", 1_000_000_000: "1GB", 123_456_789: "123MB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestImageRows(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	id := "sha256:" + strings.Repeat("ab", 32)
	items := []image.Summary{
		{ID: id, Created: now.Add(-2 * time.Hour).Unix(), Size: 4_261_000, Containers: -1,
			RepoTags:    []string{"busybox:latest", "127.0.0.1:5000/berth/busybox:1"},
			RepoDigests: []string{"busybox@sha256:" + strings.Repeat("cd", 32)}},
		{ID: "sha256:" + strings.Repeat("ef", 32), Created: now.Unix(), Size: 10,
			RepoDigests: []string{"alpine@sha256:" + strings.Repeat("01", 32)}},
		{ID: "sha256:" + strings.Repeat("99", 32), Created: now.Unix(), Size: 10},
	}
	rows := imageRows(items, now, false)
	if len(rows) != 4 {
		t.Fatalf("rows = %+v", rows)
	}
	r := rows[0]
	if r.Repository != "busybox" || r.Tag != "latest" || r.ID != strings.Repeat("ab", 6) || r.CreatedSince != "2 hours ago" ||
		r.Size != "4.26MB" || r.Digest != "sha256:"+strings.Repeat("cd", 32) || r.Containers != "N/A" {
		t.Errorf("row 0 = %+v", r)
	}
	if rows[1].Repository != "127.0.0.1:5000/berth/busybox" || rows[1].Tag != "1" || rows[1].Digest != "<none>" {
		t.Errorf("row 1 = %+v", rows[1])
	}
	if rows[2].Repository != "alpine" || rows[2].Tag != "<none>" || rows[2].Digest != "sha256:"+strings.Repeat("01", 32) {
		t.Errorf("row 2 (digest only) = %+v", rows[2])
	}
	if rows[3].Repository != "<none>" || rows[3].Tag != "<none>" {
		t.Errorf("row 3 (dangling) = %+v", rows[3])
	}
	if full := imageRows(items, now, true); full[0].ID != id {
		t.Errorf("--no-trunc ID = %q", full[0].ID)
	}
}

func TestTemplates(t *testing.T) {
	rows := []any{
		imageRow{Repository: "busybox", Tag: "latest", ID: "abc", Size: "1MB"},
		imageRow{Repository: "<none>", Tag: "<none>", ID: "def", Size: "2MB"},
	}
	for _, tc := range []struct{ format, want string }{
		{"{{.Repository}}:{{.Tag}}", "busybox:latest\n<none>:<none>\n"},
		{`{{.ID}}\t{{upper .Repository}}`, "abc\tBUSYBOX\ndef\t<NONE>\n"},
		{"{{join (split .Repository \"b\") \"-\"}}", "-usy-ox\n<none>\n"},
		{"{{truncate .Repository 3}}|{{pad .Tag 1 1}}|{{lower \"X\"}}|{{title \"ab\"}}", "bus| latest |x|Ab\n<no| <none> |x|Ab\n"},
		{"table {{.Repository}}\t{{.Size}}", "REPOSITORY   SIZE\nbusybox      1MB\n<none>       2MB\n"},
	} {
		tmpl, table, err := parseTemplate(tc.format)
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		var buf bytes.Buffer
		if err := writeFormatted(&buf, tmpl, table, imageHeader(), rows); err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if buf.String() != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.format, buf.String(), tc.want)
		}
	}
	// json and {{json .}} give one object per line, keys sorted like docker's.
	for _, f := range []string{"json", "{{json .}}"} {
		tmpl, _, _ := parseTemplate(f)
		var buf bytes.Buffer
		if err := writeFormatted(&buf, tmpl, false, nil, rows[:1]); err != nil {
			t.Fatal(err)
		}
		want := `{"Containers":"","CreatedAt":"","CreatedSince":"","Digest":"","ID":"abc","Repository":"busybox","SharedSize":"","Size":"1MB","Tag":"latest","UniqueSize":"","VirtualSize":""}` + "\n"
		if buf.String() != want {
			t.Errorf("%s: got %s", f, buf.String())
		}
	}
	if _, _, err := parseTemplate("{{.Repository"); err == nil {
		t.Error("a broken template parsed")
	}
}

func TestProgressDisplay(t *testing.T) {
	msgs := []jsonstream.Message{
		{Status: "Pulling from library/busybox", ID: "latest"},
		{Status: "Pulling fs layer", ID: "aaa"},
		{Status: "Pulling fs layer", ID: "bbb"},
		{Status: "Downloading", ID: "aaa", Progress: &jsonstream.Progress{Current: 50, Total: 100}},
		{Status: "Pull complete", ID: "aaa"},
		{Status: "Digest: sha256:x"},
	}
	var plain bytes.Buffer
	d := &progressDisplay{out: &plain, ids: map[string]int{}}
	for _, m := range msgs {
		d.show(m)
	}
	want := "latest: Pulling from library/busybox\naaa: Pulling fs layer\nbbb: Pulling fs layer\naaa: Pull complete\nDigest: sha256:x\n"
	if plain.String() != want {
		t.Errorf("piped output:\n got %q\nwant %q", plain.String(), want)
	}

	var tty bytes.Buffer
	d = &progressDisplay{out: &tty, tty: true, ids: map[string]int{}}
	for _, m := range msgs {
		d.show(m)
	}
	out := tty.String()
	// aaa is the 2nd of 3 layer lines: redrawn two lines up.
	if !strings.Contains(out, "\x1b[2A\x1b[2K\raaa: Downloading [=========================>                        ]      50B/100B\x1b[2B\r") {
		t.Errorf("terminal output lacks the in-place bar: %q", out)
	}
}

func TestServerKey(t *testing.T) {
	for in, want := range map[string]string{
		"": indexServer, "docker.io": indexServer, "https://index.docker.io/v1/": indexServer,
		"127.0.0.1:5000": "127.0.0.1:5000", "https://127.0.0.1:5000/v2/": "127.0.0.1:5000", "registry.k8s.io": "registry.k8s.io",
	} {
		if got := serverKey(in); got != want {
			t.Errorf("serverKey(%q) = %q, want %q", in, got, want)
		}
	}
}

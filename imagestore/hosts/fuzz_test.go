package hosts

import "testing"

// FuzzParseHostsFile checks that no hosts.toml, however malformed, panics
// the parser (its values are untyped TOML and go through type switches).
func FuzzParseHostsFile(f *testing.F) {
	for _, seed := range []string{
		`server = "https://registry.example.com"`,
		`[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  ca = ["a.crt"]
  client = [["c.pem", "k.pem"], "both.pem"]
  skip_verify = true
  override_path = true
  dial_timeout = "1s"
  [host."http://127.0.0.1:5000".header]
    X-A = ["1", "2"]`,
		`client = [[1, 2]]`,
		`header = 3`,
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data string) {
		entries, err := parseHostsFile(dir, []byte(data))
		if err == nil && len(entries) == 0 {
			t.Fatal("no error and no server entry")
		}
	})
}

// Command fakeplugin is a tiny real CNI plugin for the cni package's tests,
// installed under several names (fakebridge, fakeportmap, loopback). It
// appends every invocation (command, CNI_* environment, stdin) as one JSON
// line to the file named by its config's "record" key (or $FAKECNI_RECORD),
// and answers:
//
//   - VERSION: supports 0.3.0 to 1.0.0 (so a 1.1.0 config is refused);
//   - ADD: prevResult if it has one (a chained plugin), else a result with a
//     host-side interface carrying the gateway's address and the pod's
//     interface carrying "ip" (with "gateway"); "failAdd" answers error code
//     11 (try again later) instead; "hangAdd" creates <record>.hang and
//     waits for its parent to die (a runtime killed in the middle of an
//     ADD), then fails;
//   - DEL, CHECK: nothing; "failDel" answers error code 999.
//
// It only uses the standard library so TestMain builds it in a second.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

type conf struct {
	CNIVersion string          `json:"cniVersion"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Record     string          `json:"record"`
	IP         string          `json:"ip"`
	IP6        string          `json:"ip6"`
	Gateway    string          `json:"gateway"`
	FailAdd    bool            `json:"failAdd"`
	FailDel    bool            `json:"failDel"`
	HangAdd    bool            `json:"hangAdd"`
	PrevResult json.RawMessage `json:"prevResult"`
}

// Invocation is one recorded call; the tests decode the same shape.
type Invocation struct {
	Plugin      string          `json:"plugin"`
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	NetNS       string          `json:"netns"`
	IfName      string          `json:"ifName"`
	Args        string          `json:"args"`
	Path        string          `json:"path"`
	Stdin       json.RawMessage `json:"stdin"`
}

func main() {
	cmd := os.Getenv("CNI_COMMAND")
	stdin, _ := io.ReadAll(os.Stdin)
	if cmd == "VERSION" {
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}`)
		return
	}
	var c conf
	if err := json.Unmarshal(stdin, &c); err != nil {
		fail(6, "decode config", err.Error())
	}
	if c.Record == "" {
		// The built-in loopback config has no record key.
		c.Record = os.Getenv("FAKECNI_RECORD")
	}
	if c.Record != "" {
		record(c.Record, Invocation{
			Plugin:      filepath.Base(os.Args[0]),
			Command:     cmd,
			ContainerID: os.Getenv("CNI_CONTAINERID"),
			NetNS:       os.Getenv("CNI_NETNS"),
			IfName:      os.Getenv("CNI_IFNAME"),
			Args:        os.Getenv("CNI_ARGS"),
			Path:        os.Getenv("CNI_PATH"),
			Stdin:       stdin,
		})
	}
	switch cmd {
	case "ADD":
		if c.FailAdd {
			fail(11, "fake add failure", c.Type)
		}
		if c.HangAdd {
			parent := os.Getppid()
			if err := os.WriteFile(c.Record+".hang", nil, 0o600); err != nil {
				fail(5, "write hang file", err.Error())
			}
			for os.Getppid() == parent {
				time.Sleep(10 * time.Millisecond)
			}
			fail(11, "parent died", c.Type)
		}
		if len(c.PrevResult) > 0 {
			var prev map[string]any
			_ = json.Unmarshal(c.PrevResult, &prev)
			prev["cniVersion"] = c.CNIVersion
			out, _ := json.Marshal(prev)
			os.Stdout.Write(out)
			return
		}
		res := map[string]any{"cniVersion": c.CNIVersion}
		if c.IP != "" || c.IP6 != "" {
			res["interfaces"] = []map[string]any{
				{"name": "fakebr0", "mac": "02:00:00:00:00:01"},
				{"name": os.Getenv("CNI_IFNAME"), "mac": "02:00:00:00:00:02", "sandbox": os.Getenv("CNI_NETNS")},
			}
			ips := []map[string]any{
				// The bridge's own address: not the pod's.
				{"address": "10.99.0.1/16", "interface": 0},
			}
			// IPv6 first: the caller must still put IPv4 first.
			if c.IP6 != "" {
				ips = append(ips, map[string]any{"address": c.IP6, "interface": 1})
			}
			if c.IP != "" {
				ips = append(ips, map[string]any{"address": c.IP, "gateway": c.Gateway, "interface": 1})
			}
			res["ips"] = ips
			res["dns"] = map[string]any{"nameservers": []string{"10.99.0.10"}}
		}
		out, _ := json.Marshal(res)
		os.Stdout.Write(out)
	case "DEL", "CHECK":
		if c.FailDel && cmd == "DEL" {
			fail(999, "fake del failure", c.Type)
		}
	default:
		fail(4, "unknown CNI_COMMAND", cmd)
	}
}

func record(path string, inv Invocation) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fail(5, "open record", err.Error())
	}
	defer f.Close()
	line, _ := json.Marshal(inv)
	// One write per line: O_APPEND keeps concurrent plugins' lines whole.
	if _, err := f.Write(append(line, '\n')); err != nil {
		fail(5, "write record", err.Error())
	}
}

func fail(code int, msg, details string) {
	out, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "code": code, "msg": msg, "details": details})
	os.Stdout.Write(out)
	os.Exit(1)
}

package main

import (
	"strings"
	"testing"

	"github.com/docker/cli/cli/command"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

type fakeServer struct {
	version string
	info    command.ServerInfo
}

func (f fakeServer) CurrentVersion() string         { return f.version }
func (f fakeServer) ServerInfo() command.ServerInfo { return f.info }

func TestHideUnsupported(t *testing.T) {
	tree := func() *cobra.Command {
		root := &cobra.Command{Use: "berth"}
		root.AddCommand(
			&cobra.Command{Use: "ps"},
			&cobra.Command{Use: "swarm", Annotations: map[string]string{"swarm": ""}},
			&cobra.Command{Use: "service", Annotations: map[string]string{"swarm": "manager"}},
			&cobra.Command{Use: "checkpoint", Annotations: map[string]string{"experimental": ""}},
			&cobra.Command{Use: "new", Annotations: map[string]string{"version": "1.60"}},
		)
		root.Flags().Bool("squash", false, "")
		root.Flags().SetAnnotation("squash", "experimental", nil)
		return root
	}
	hidden := func(root *cobra.Command) string {
		var h []string
		for _, c := range root.Commands() {
			if c.Hidden {
				h = append(h, c.Name())
			}
		}
		if root.Flags().Lookup("squash").Hidden {
			h = append(h, "--squash")
		}
		return strings.Join(h, " ")
	}
	berthd := fakeServer{version: "1.57", info: command.ServerInfo{OSType: "linux", SwarmStatus: &client.SwarmStatus{NodeState: "inactive"}}}
	root := tree()
	hideUnsupported(root, berthd)
	if got := hidden(root); got != "checkpoint new service --squash" {
		t.Errorf("hidden against berthd: %q", got)
	}
	manager := fakeServer{version: "1.60", info: command.ServerInfo{HasExperimental: true, SwarmStatus: &client.SwarmStatus{NodeState: "active", ControlAvailable: true}}}
	root = tree()
	hideUnsupported(root, manager)
	if got := hidden(root); got != "" {
		t.Errorf("hidden against an experimental swarm manager: %q", got)
	}

	root = tree()
	cp, _, _ := root.Find([]string{"checkpoint"})
	if err := isSupported(cp, berthd); err == nil || err.Error() != "berth checkpoint is only supported on a daemon with experimental features enabled" {
		t.Errorf("isSupported(checkpoint) = %v", err)
	}
	nw, _, _ := root.Find([]string{"new"})
	if err := isSupported(nw, berthd); err == nil || err.Error() != "berth new requires API version 1.60, but the daemon API version is 1.57" {
		t.Errorf("isSupported(new) = %v", err)
	}
	root.Flags().Set("squash", "true")
	if err := isSupported(root, berthd); err == nil || !strings.Contains(err.Error(), `"--squash" is only supported on a daemon with experimental features enabled`) {
		t.Errorf("isSupported(--squash) = %v", err)
	}
	if err := isSupported(root, manager); err != nil {
		t.Errorf("isSupported(--squash) on an experimental daemon = %v", err)
	}
}

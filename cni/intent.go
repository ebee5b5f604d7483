package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// An intent is written, durably, before the first plugin of an Attach
// runs, and removed only when a Detach (or the rollback of a failed Attach)
// of the pod has succeeded. It holds what a DEL needs: the pod's arguments,
// the config list the ADD runs with, and the output of the last plugin
// whose ADD succeeded (firewall and portmap are told the pod's addresses
// through it).
//
// libcni caches an attachment only once the whole ADD has succeeded, so
// before intents a crash in the middle of an ADD left host-local leases,
// veths and iptables rules that no DEL would ever name: over a node's life
// crashes exhausted the pod CIDR. With them, GC finds every pod whose
// Attach may have begun.
type intent struct {
	Args PodArgs `json:"args"`
	// Network is the config list (its JSON) the ADD runs with.
	Network json.RawMessage `json:"network"`
	// Result is the output of the last plugin whose ADD succeeded.
	Result json.RawMessage `json:"result,omitempty"`
}

func (m *Manager) intentPath(id string) string {
	return filepath.Join(m.cfg.IntentDir, id+".json")
}

// writeIntent records it; durable the first time, when it must survive a
// power loss as the leases it stands for do. Later updates (the result of
// each plugin) only need to survive berthd's death.
func (m *Manager) writeIntent(it *intent, durable bool) error {
	b, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("record cni intent of pod %s: %w", it.Args.ID, err)
	}
	write := atomicfile.Replace
	if durable {
		write = atomicfile.WriteFile
	}
	if err := write(m.intentPath(it.Args.ID), b, 0o600); err != nil {
		return fmt.Errorf("record cni intent of pod %s: %w", it.Args.ID, err)
	}
	return nil
}

// readIntent returns the pod's intent, nil when it has none.
func (m *Manager) readIntent(id string) (*intent, error) {
	b, err := os.ReadFile(m.intentPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cni intent of pod %s: %w", id, err)
	}
	var it intent
	if err := json.Unmarshal(b, &it); err != nil || it.Args.ID != id {
		// A torn or foreign file: nothing a DEL could use. GC drops it.
		return nil, fmt.Errorf("read cni intent of pod %s: damaged record", id)
	}
	return &it, nil
}

func (m *Manager) removeIntent(id string) error {
	if err := os.Remove(m.intentPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cni intent of pod %s: %w", id, err)
	}
	return nil
}

// intentIDs lists the pods that have an intent.
func (m *Manager) intentIDs() ([]string, error) {
	ents, err := os.ReadDir(m.cfg.IntentDir)
	if err != nil {
		return nil, fmt.Errorf("read cni intents: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// list returns the intent's config list.
func (it *intent) list() (*libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromBytes(it.Network)
	if err != nil {
		return nil, fmt.Errorf("cni intent of pod %s: config: %w", it.Args.ID, err)
	}
	return list, nil
}

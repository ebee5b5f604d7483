package cri

import "sync"

// podLocks serialises the network steps of one pod: CNI must not run ADD
// and DEL for the same pod at once (a DEL racing an ADD can leak the IP the
// ADD is allocating), and the kubelet may retry a stop while a remove runs.
// Different pods proceed in parallel.
type podLocks struct {
	mu    sync.Mutex
	locks map[string]*podLock
}

type podLock struct {
	sync.Mutex
	users int
}

// lock takes id's lock and returns its release.
func (p *podLocks) lock(id string) (unlock func()) {
	p.mu.Lock()
	if p.locks == nil {
		p.locks = map[string]*podLock{}
	}
	l := p.locks[id]
	if l == nil {
		l = &podLock{}
		p.locks[id] = l
	}
	l.users++
	p.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		p.mu.Lock()
		if l.users--; l.users == 0 {
			delete(p.locks, id)
		}
		p.mu.Unlock()
	}
}

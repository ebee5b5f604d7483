package builder

import (
	"context"
	"sync"
)

// Stages run concurrently (a stage waits only where it needs another:
// its FROM, a COPY --from, a RUN --mount from=), but their progress goes
// out one stage at a time, in build order, as docker's classic builder
// prints it: the events of a stage that runs ahead are held until the
// stages before it have finished. Step numbers are given as steps are
// printed, so they count up.
type printer struct {
	mu     sync.Mutex
	out    func(Event)
	order  []int
	cur    int
	queued map[int][]Event
	done   map[int]bool
	step   int
	total  int
}

type stageKey struct{}

// withStage marks ctx as the context of stage i's work.
func withStage(ctx context.Context, i int) context.Context {
	return context.WithValue(ctx, stageKey{}, i)
}

func stageOf(ctx context.Context) int {
	if i, ok := ctx.Value(stageKey{}).(int); ok {
		return i
	}
	return -1
}

func newPrinter(out func(Event)) *printer {
	return &printer{out: out, queued: map[int][]Event{}, done: map[int]bool{}}
}

// start sets the stages' order and the number of steps.
func (p *printer) start(order []int, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.order, p.total = order, total
}

// addSteps counts steps found while building (ONBUILD triggers).
func (p *printer) addSteps(n int) {
	p.mu.Lock()
	p.total += n
	p.mu.Unlock()
}

// emit prints e now if its stage is the one printing (or it belongs to no
// stage), else queues it.
func (p *printer) emit(stage int, e Event) {
	if p.out == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if stage >= 0 && p.cur < len(p.order) && p.order[p.cur] != stage {
		p.queued[stage] = append(p.queued[stage], e)
		return
	}
	p.print(e)
}

// print sends e; called with p.mu held.
func (p *printer) print(e Event) {
	if e.Kind == EventStep {
		p.step++
		e.Step, e.Total = p.step, max(p.total, p.step)
	}
	p.out(e)
}

// finish marks stage i done and prints what the next stages queued.
func (p *printer) finish(stage int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[stage] = true
	for p.cur < len(p.order) && p.done[p.order[p.cur]] {
		p.cur++
		if p.cur < len(p.order) {
			next := p.order[p.cur]
			for _, e := range p.queued[next] {
				p.print(e)
			}
			delete(p.queued, next)
		}
	}
}

// flush prints everything queued, in stage order (after a failure, so
// that the output of every step that ran is seen).
func (p *printer) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ; p.cur < len(p.order); p.cur++ {
		st := p.order[p.cur]
		for _, e := range p.queued[st] {
			p.print(e)
		}
		delete(p.queued, st)
	}
}

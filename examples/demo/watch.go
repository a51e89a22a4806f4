package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// watch samples every host's hypervisor, independently of the cluster, to
// catch what the demo promises never happens: a VM executing on two hosts at
// once.

// samplePeriod is how often the hypervisors are read.
const samplePeriod = 20 * time.Millisecond

// DoubleRun is a moment a VM executed on more than one host.
type DoubleRun struct {
	VM    string   `json:"vm"`
	Hosts []string `json:"hosts"`
	At    Millis   `json:"at_ms"` // since the watch started
}

type watch struct {
	p     *pool
	start time.Time

	mu     sync.Mutex
	last   map[string][]string // VM → hosts executing it
	double []DoubleRun
}

func newWatch(p *pool) *watch {
	return &watch{p: p, start: time.Now(), last: map[string][]string{}}
}

func (w *watch) run(ctx context.Context) {
	t := time.NewTicker(samplePeriod)
	defer t.Stop()
	for {
		w.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read asks every host what executes there.
func (w *watch) read(ctx context.Context) map[string][]string {
	now := map[string][]string{}
	for _, h := range w.p.hosts {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		names, err := h.executing(sctx)
		cancel()
		if err != nil {
			continue
		}
		for _, n := range names {
			now[n] = append(now[n], h.id)
		}
	}
	for _, hosts := range now {
		slices.Sort(hosts)
	}
	return now
}

func (w *watch) sample(ctx context.Context) {
	now := w.read(ctx)
	at := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteDoubles(now, at)
}

// snapshot reads the hypervisors now; a double run it sees counts as one
// the sampler saw.
func (w *watch) snapshot(ctx context.Context) map[string][]string {
	now := w.read(ctx)
	at := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteDoubles(now, at)
	return now
}

// noteDoubles records each VM found executing on a set of several hosts it
// was not already recorded on, and remembers now for the next reading.
// w.mu must be held.
func (w *watch) noteDoubles(now map[string][]string, at time.Time) {
	for vm, hosts := range now {
		if len(hosts) > 1 && !slices.Equal(w.last[vm], hosts) {
			w.double = append(w.double, DoubleRun{VM: vm, Hosts: hosts, At: Millis(at.Sub(w.start))})
		}
	}
	w.last = now
}

func (w *watch) doubles() []DoubleRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.double)
}

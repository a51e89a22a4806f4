package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xenha/xenha/ha"
)

// view shows the pool as it changes: on a terminal a compact table redrawn
// on every change with the latest notes under it; otherwise one line per
// change, which reads well in CI logs and pipes.
type view struct {
	w        io.Writer
	terminal bool
	p        *pool
	start    time.Time

	mu    sync.Mutex
	prev  map[string]string // "host h1" / "vm web-1" → rendered value
	notes []string
	dirty bool   // a note arrived since the last picture
	shown string // the last picture drawn
	done  chan struct{}
	once  sync.Once
}

func newView(w io.Writer, terminal bool, p *pool, start time.Time) *view {
	return &view{w: w, terminal: terminal, p: p, start: start, prev: map[string]string{}, done: make(chan struct{})}
}

func (v *view) stamp() string { return fmt.Sprintf("%6.2fs", time.Since(v.start).Seconds()) }

// note records a step of the script.
func (v *view) note(format string, args ...any) {
	line := v.stamp() + "  " + fmt.Sprintf(format, args...)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.notes = append(v.notes, line)
	v.dirty = true
	if !v.terminal {
		fmt.Fprintln(v.w, line)
	}
}

// stop draws the final picture, which stays on screen above the summary.
func (v *view) stop() {
	v.once.Do(func() { close(v.done) })
	var st *ha.State
	if m := v.p.live(); m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, _ = m.State(ctx, ha.Consistent)
		cancel()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dirty = true
	v.drawLocked(st, true)
}

func (v *view) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.done:
			return
		case <-t.C:
		}
		m := v.p.live()
		if m == nil {
			continue
		}
		st, err := m.State(ctx, ha.Stale)
		if err != nil {
			continue
		}
		v.mu.Lock()
		v.drawLocked(st, false)
		v.mu.Unlock()
	}
}

// cells renders the state as key → value, the unit of change.
func (v *view) cells(st *ha.State) map[string]string {
	out := map[string]string{}
	leader := ""
	if h := v.p.leader(); h != nil {
		leader = h.id
	}
	out["leader"] = leader
	for id, h := range st.Hosts {
		val := fmt.Sprintf("%s epoch %d", h.State, h.Epoch)
		if ph := v.p.host(id); ph != nil && !ph.isUp() {
			val += " (power off)"
		}
		out["host "+id] = val
	}
	for name, vm := range st.VMs {
		where := vm.Host
		if where == "" {
			where = "unplaced"
			if vm.Pending != "" {
				where += " (" + vm.Pending + ")"
			}
		}
		obs := vm.Observed.State.String()
		if vm.Observed.Host != "" && vm.Observed.Host != vm.Host {
			obs += " on " + vm.Observed.Host
		}
		out["vm "+name] = where + " " + obs
	}
	return out
}

func (v *view) drawLocked(st *ha.State, final bool) {
	if st == nil {
		if v.terminal && final && v.shown != "" {
			fmt.Fprint(v.w, "\x1b[H\x1b[J"+v.shown)
		}
		return
	}
	cur := v.cells(st)
	changed := false
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if v.prev[k] != cur[k] {
			changed = true
			if !v.terminal {
				if k == "leader" {
					if cur[k] != "" {
						fmt.Fprintf(v.w, "%s  leader is %s\n", v.stamp(), cur[k])
					}
				} else {
					fmt.Fprintf(v.w, "%s  %-10s %s\n", v.stamp(), k, cur[k])
				}
			}
		}
	}
	v.prev = cur
	if !v.terminal || !changed && !v.dirty {
		return
	}
	v.dirty = false
	v.shown = v.table(st, cur)
	fmt.Fprint(v.w, "\x1b[H\x1b[J"+v.shown)
}

// table is the terminal picture: hosts with their VMs, then the notes.
func (v *view) table(st *ha.State, cur map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "xenha demo   %s   leader %s\n\n", v.stamp(), cur["leader"])
	fmt.Fprintf(&b, "%-5s %-28s %s\n", "HOST", "STATE", "VMS (● running, ○ starting)")
	byHost := map[string][]string{}
	var unplaced []string
	for _, name := range slices.Sorted(maps.Keys(st.VMs)) {
		vm := st.VMs[name]
		mark := "○"
		if vm.Observed.Host == vm.Host && vm.Observed.State.Executing() {
			mark = "●"
		}
		if vm.Host == "" {
			unplaced = append(unplaced, name)
			continue
		}
		byHost[vm.Host] = append(byHost[vm.Host], mark+name)
	}
	for _, id := range slices.Sorted(maps.Keys(st.Hosts)) {
		fmt.Fprintf(&b, "%-5s %-28s %s\n", id, cur["host "+id], strings.Join(byHost[id], " "))
	}
	if len(unplaced) > 0 {
		fmt.Fprintf(&b, "%-5s %-28s %s\n", "-", "unplaced", strings.Join(unplaced, " "))
	}
	b.WriteString("\n")
	notes := v.notes
	if len(notes) > 10 {
		notes = notes[len(notes)-10:]
	}
	for _, n := range notes {
		b.WriteString(n + "\n")
	}
	return b.String()
}

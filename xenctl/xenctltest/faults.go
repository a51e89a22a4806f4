package xenctltest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// Method names a Hypervisor call, for Fault and Call.
type Method string

// The methods of the fake that a Fault can target and the call log records.
const (
	MethodDomains  Method = "Domains"
	MethodDomain   Method = "Domain"
	MethodDefine   Method = "Define"
	MethodStart    Method = "Start"
	MethodShutdown Method = "Shutdown"
	MethodDestroy  Method = "Destroy"
	MethodUndefine Method = "Undefine"
	MethodHostInfo Method = "HostInfo"
	MethodMigrate  Method = "Migrate"
	MethodEvents   Method = "Events"
	MethodSuspend  Method = "Suspend"
	MethodResume   Method = "Resume"
)

// Fault is an injected misbehaviour. It applies to calls that match Method and
// Domain (empty matches any), Times times or, with Times zero, always. A
// matching call first waits Delay, then hangs if Hang is set, then fails with
// Err if set; otherwise it proceeds normally after the delay.
type Fault struct {
	Method Method
	Domain string
	// Err is returned, wrapped with the host and domain, so errors.Is finds it.
	Err error
	// Hang blocks the call until its context ends, then returns an error
	// wrapping xenctl.ErrUnavailable, like a libvirtd stuck in a kernel call.
	Hang bool
	// Delay slows the call down; a context that ends first cuts it short
	// with ErrUnavailable.
	Delay time.Duration
	// Times is how many matching calls the fault affects; zero is every one.
	Times int
}

type fault struct {
	Fault
	left int
}

// Inject adds a fault and returns a function that removes it. Faults are tried
// in the order they were injected; the first that matches applies.
func (h *Host) Inject(f Fault) (remove func()) {
	ff := &fault{Fault: f, left: f.Times}
	h.world.mu.Lock()
	h.faults = append(h.faults, ff)
	h.world.mu.Unlock()
	return func() {
		h.world.mu.Lock()
		defer h.world.mu.Unlock()
		h.faults = slices.DeleteFunc(h.faults, func(x *fault) bool { return x == ff })
	}
}

// ClearFaults removes every injected fault.
func (h *Host) ClearFaults() {
	h.world.mu.Lock()
	defer h.world.mu.Unlock()
	h.faults = nil
}

// matchFault returns the first fault matching the call and uses up one of its
// times. Call with the world locked.
func (h *Host) matchFault(m Method, dom string) *Fault {
	for i, f := range h.faults {
		if (f.Method != "" && f.Method != m) || (f.Domain != "" && f.Domain != dom) {
			continue
		}
		out := f.Fault
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				h.faults = slices.Delete(h.faults, i, i+1)
			}
		}
		return &out
	}
	return nil
}

// Call is one entry of the call log.
type Call struct {
	Method Method
	Domain string // empty for host-wide calls
	Err    error
	Time   time.Time
}

// Calls returns the calls made so far, oldest first.
func (h *Host) Calls() []Call {
	h.callMu.Lock()
	defer h.callMu.Unlock()
	return slices.Clone(h.calls)
}

// CallCount returns how many calls of method m were made.
func (h *Host) CallCount(m Method) int {
	h.callMu.Lock()
	defer h.callMu.Unlock()
	n := 0
	for _, c := range h.calls {
		if c.Method == m {
			n++
		}
	}
	return n
}

type call struct {
	h      *Host
	method Method
	domain string
	start  time.Time
}

// end records the call's outcome in the log and returns err.
func (c *call) end(err error) error {
	c.h.callMu.Lock()
	c.h.calls = append(c.h.calls, Call{Method: c.method, Domain: c.domain, Err: err, Time: c.start})
	c.h.callMu.Unlock()
	if err != nil {
		c.h.log.Debug("xenctltest call failed", "host", c.h.name, "method", c.method, "domain", c.domain, "err", err)
	}
	return err
}

// begin applies injected faults and the daemon's state to a call. On success it
// returns with the world locked; on error, unlocked.
func (h *Host) begin(ctx context.Context, m Method, dom string) (*call, error) {
	c := &call{h: h, method: m, domain: dom, start: time.Now()}
	what := fmt.Sprintf("%s %q on host %s", m, dom, h.name)
	if dom == "" {
		what = fmt.Sprintf("%s on host %s", m, h.name)
	}
	if ctx.Err() != nil {
		return c, unavailable(ctx, "%s", what)
	}
	h.world.mu.Lock()
	f := h.matchFault(m, dom)
	h.world.mu.Unlock()
	if f != nil {
		h.log.Debug("xenctltest fault", "host", h.name, "method", m, "domain", dom, "hang", f.Hang, "delay", f.Delay, "err", f.Err)
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return c, unavailable(ctx, "%s", what)
			case <-t.C:
			}
		}
		if f.Hang {
			<-ctx.Done()
			return c, unavailable(ctx, "%s: hypervisor hung", what)
		}
		if f.Err != nil {
			return c, fmt.Errorf("%s: %w", what, f.Err)
		}
	}
	h.world.mu.Lock()
	switch {
	case h.closed:
		h.world.mu.Unlock()
		return c, fmt.Errorf("%s: %w: connection closed", what, xenctl.ErrUnavailable)
	case h.off:
		h.world.mu.Unlock()
		return c, fmt.Errorf("%s: %w: host is powered off", what, xenctl.ErrUnavailable)
	case h.down:
		h.world.mu.Unlock()
		return c, fmt.Errorf("%s: %w: hypervisor daemon is not running; wait for it to restart", what, xenctl.ErrUnavailable)
	}
	return c, nil
}

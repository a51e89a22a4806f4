package xenctltest

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenha/xenha/xenctl"
)

// ErrNotRunning is returned, wrapped, when Suspend or Resume finds the domain
// shut off or crashed, as libvirt refuses with "domain is not running".
var ErrNotRunning = errors.New("xenctltest: domain is not running")

// Suspend pauses a running domain: it keeps its memory but executes nothing.
// Suspending a paused domain is not an error.
func (h *Host) Suspend(ctx context.Context, name string) error {
	c, d, err := h.beginOn(ctx, MethodSuspend, name)
	if err != nil {
		return c.end(err)
	}
	defer h.world.mu.Unlock()
	switch d.state {
	case xenctl.StatePaused:
		return c.end(nil)
	case xenctl.StateRunning, xenctl.StateShuttingDown:
		d.state, d.reason = xenctl.StatePaused, "user"
		h.emit(xenctl.EventSuspended, d)
		return c.end(nil)
	}
	return c.end(fmt.Errorf("%w: suspend %q on host %s: it is %s", ErrNotRunning, name, h.name, d.state))
}

// Resume continues a paused domain. Resuming a running domain is not an error.
func (h *Host) Resume(ctx context.Context, name string) error {
	c, d, err := h.beginOn(ctx, MethodResume, name)
	if err != nil {
		return c.end(err)
	}
	defer h.world.mu.Unlock()
	switch d.state {
	case xenctl.StateRunning, xenctl.StateShuttingDown:
		return c.end(nil)
	case xenctl.StatePaused:
		d.state, d.reason = xenctl.StateRunning, "unpaused"
		h.emit(xenctl.EventResumed, d)
		return c.end(nil)
	}
	return c.end(fmt.Errorf("%w: resume %q on host %s: it is %s", ErrNotRunning, name, h.name, d.state))
}

var _ xenctl.Pauser = (*Host)(nil)

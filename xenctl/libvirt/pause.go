package libvirt

import (
	"context"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
)

// Suspend pauses a running domain (virDomainSuspend): it keeps its memory and
// executes nothing. Suspending a paused domain is not an error.
func (h *Hypervisor) Suspend(ctx context.Context, name string) error {
	return h.withDomain(ctx, "suspend", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		if paused, err := isPaused(d); err != nil || paused {
			return err
		}
		err := d.Suspend()
		if isCode(err, libvirt.ERR_OPERATION_INVALID) {
			if paused, perr := isPaused(d); perr == nil && paused {
				return nil // paused meanwhile, by someone else
			}
		}
		return err
	})
}

// Resume continues a paused domain (virDomainResume). Resuming a running
// domain is not an error.
func (h *Hypervisor) Resume(ctx context.Context, name string) error {
	return h.withDomain(ctx, "resume", name, func(_ *libvirt.Connect, d *libvirt.Domain) error {
		state, _, err := d.GetState()
		if err != nil {
			return err
		}
		if s, _ := mapState(int(state), 0); s.Executing() {
			return nil
		}
		return d.Resume()
	})
}

func isPaused(d *libvirt.Domain) (bool, error) {
	state, _, err := d.GetState()
	if err != nil {
		return false, err
	}
	s, _ := mapState(int(state), 0)
	return s == xenctl.StatePaused, nil
}

var _ xenctl.Pauser = (*Hypervisor)(nil)

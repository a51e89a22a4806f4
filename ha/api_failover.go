package ha

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Operator entry points of the failover code.

// ErrHostAlive is returned by AckFence for a host that is still renewing its
// lease: it is not off, whatever anyone believes.
var ErrHostAlive = errors.New("ha: host is renewing its lease")

// AckFence records an operator's statement that host is powered off, so
// that its VMs can be recovered when no fencing device can prove it: the
// audited equivalent of `xe vm-reset-powerstate --force`. It is refused for
// a host that renews its lease (ErrHostAlive) and for one the cluster has
// not yet marked suspect (wait DeadTime after it went silent). The record
// names operator; the VMs still move only after ReassignAfter of silence.
// Run it on any member; it is forwarded to the leader.
func (c *Cluster) AckFence(ctx context.Context, host, operator string) error {
	if operator == "" {
		return fmt.Errorf("ha: acknowledge fence of %s: name the operator: %w", host, ErrRefused)
	}
	var h Host
	var ok bool
	c.read(func(s *State) {
		if p := s.Hosts[host]; p != nil {
			h, ok = *p, true
		}
	})
	if !ok {
		return fmt.Errorf("ha: acknowledge fence of %s: %w", host, ErrNotFound)
	}
	if h.State == HostOnline || h.State == HostMaintenance {
		return fmt.Errorf("ha: acknowledge fence of %s by %s: the host is %s and renews its lease; power it off first and wait until it is suspect: %w",
			host, operator, h.State, ErrHostAlive)
	}
	if h.State != HostSuspect {
		return fmt.Errorf("ha: acknowledge fence of %s by %s: the host is %s, not suspect: %w", host, operator, h.State, ErrRefused)
	}
	evidence := "operator " + operator + " confirmed the host is powered off"
	_, err := c.propose(ctx, &fenceCmd{Host: host, Epoch: h.Epoch, Method: "manual", Evidence: evidence,
		ProofTime: time.Now(), Manual: true, Operator: operator})
	if err != nil {
		return fmt.Errorf("ha: acknowledge fence of %s by %s: %w", host, operator, err)
	}
	return nil
}

// Maintenance puts host into maintenance mode (on) or takes it out. In
// maintenance a host gets no new VMs, and the leader moves its VMs away
// (stopping each on the host, then starting it elsewhere).
func (c *Cluster) Maintenance(ctx context.Context, host string, on bool) error {
	if _, err := c.propose(ctx, &maintenanceCmd{Host: host, On: on}); err != nil {
		return fmt.Errorf("ha: maintenance %v for %s: %w", on, host, err)
	}
	return nil
}

// Migrate moves vm to host: live, through the hypervisors, when both hosts
// can (xenctl.Migrator) and the VM has no cluster volumes; otherwise the VM
// is stopped where it runs and started on host, with its storage handed
// over. It returns once the move is committed; watch the VM's Host and
// Observed state, or the events, for its end.
func (c *Cluster) Migrate(ctx context.Context, vm, host string) error {
	var from string
	var ok, live bool
	c.read(func(s *State) {
		if v := s.VMs[vm]; v != nil {
			from, ok = v.Host, true
			live = canLiveMigrate(s, v, host)
		}
	})
	if !ok {
		return fmt.Errorf("ha: migrate %s: %w", vm, ErrNotFound)
	}
	if from == host {
		return nil
	}
	if from == "" {
		return fmt.Errorf("ha: migrate %s to %s: the VM has no host yet; set Policy.Preferred instead: %w", vm, host, ErrRefused)
	}
	if live {
		if _, err := c.propose(ctx, &migrateCmd{VM: vm, From: from, To: host}); err == nil {
			return nil
		}
		// Refused meanwhile (the hosts changed): move it by stop and start.
	}
	if _, err := c.propose(ctx, &releaseCmd{VM: vm, Host: from, MoveTo: host, Reason: "migration to " + host}); err != nil {
		return fmt.Errorf("ha: migrate %s from %s to %s: %w", vm, from, host, err)
	}
	return nil
}

// Incidents returns this member's copy of the failover timelines, oldest
// first.
func (c *Cluster) Incidents() []Incident {
	var out []Incident
	c.read(func(s *State) {
		for _, inc := range s.Incidents {
			cp := *inc
			cp.Phases = append([]Phase(nil), inc.Phases...)
			cp.VMs = append([]string(nil), inc.VMs...)
			cp.Notes = append([]string(nil), inc.Notes...)
			cp.Attempts = append([]FenceAttempt(nil), inc.Attempts...)
			out = append(out, cp)
		}
	})
	return out
}

package ha

import (
	"fmt"

	"github.com/xenha/xenha/xenctl"
)

// Live migration as replicated commands: vm.migrate marks the hand-over,
// the source's agent drives the hypervisors, and vm.migrated records the
// outcome. While it lasts, neither agent starts or stops the VM, and a
// failover may give it only to the target (where it may already run) until
// that host is fenced too. (Registered in commands_failover.go.)

// migrateCmd starts a live migration: the source host's agent hands the
// running VM to the target's hypervisor. VMs with cluster volumes move by
// stop and start instead (release), because their storage generation must
// change hands while no host writes.
type migrateCmd struct {
	VM   string `json:"vm"`
	From string `json:"from"`
	To   string `json:"to"`
}

func (c *migrateCmd) kind() string { return "vm.migrate" }

func (c *migrateCmd) apply(s *State, m applyMeta) (any, error) {
	vm := s.VMs[c.VM]
	if vm == nil {
		return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, c.VM)
	}
	if vm.Host != c.From || c.From == c.To {
		return nil, refuse("VM %s is on %q: cannot live-migrate it from %s to %s", c.VM, vm.Host, c.From, c.To)
	}
	if vm.Migrating != nil {
		return nil, refuse("VM %s is already being migrated to %s", c.VM, vm.Migrating.To)
	}
	if len(vm.Spec.Volumes) > 0 {
		return nil, refuse("VM %s has cluster volumes: it moves by stop and start", c.VM)
	}
	from, to := s.Hosts[c.From], s.Hosts[c.To]
	if from == nil || from.State == HostFenced || from.State == HostLeft || from.Epoch != vm.OwnerEpoch {
		return nil, refuse("source %s cannot migrate VM %s", c.From, c.VM)
	}
	if to == nil || !eligibleHost(to) || to.MigrateURI == "" {
		return nil, refuse("host %s cannot receive a live migration of %s", c.To, c.VM)
	}
	vm.Migrating = &Migration{From: c.From, To: c.To, ToEpoch: to.Epoch}
	vm.MigrateFailed = nil
	vm.Pending = "live migration to " + c.To
	return nil, nil
}

// migratedCmd ends a live migration, reported by the source host. On
// success the VM belongs to the target from now on.
type migratedCmd struct {
	VM    string `json:"vm"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"` // the source's
	Err   string `json:"err,omitempty"`
}

func (c *migratedCmd) kind() string { return "vm.migrated" }

func (c *migratedCmd) apply(s *State, m applyMeta) (any, error) {
	vm := s.VMs[c.VM]
	if vm == nil {
		return nil, fmt.Errorf("%w: %w: VM %q", ErrRefused, ErrNotFound, c.VM)
	}
	if vm.Migrating == nil || vm.Migrating.From != c.From || vm.Migrating.To != c.To || vm.Host != c.From {
		return nil, refuse("VM %s has no migration from %s to %s under way", c.VM, c.From, c.To)
	}
	if h := s.Hosts[c.From]; h == nil || h.Epoch != c.Epoch {
		return nil, refuse("source %s reports from a stale epoch", c.From)
	}
	mig := vm.Migrating
	vm.Migrating = nil
	if c.Err != "" {
		// The VM still runs on its source: record why, so that a drain
		// moves it by stop and start instead of trying again, and an
		// operator's Migrate gives up with the hypervisor's reason.
		vm.Pending = "live migration to " + c.To + " failed: " + c.Err
		vm.MigrateFailed = &MigrateFailure{From: c.From, To: c.To, Error: c.Err, Time: m.At}
		if vm.MoveTo == c.To {
			vm.MoveTo = ""
		}
		return nil, nil
	}
	// The target received it at ToEpoch: if it was fenced since, the VM is
	// a fenced host's VM like any other and recovered as such.
	vm.Host, vm.OwnerEpoch, vm.Pending, vm.LocalRestarts, vm.MigrateFailed = c.To, mig.ToEpoch, "", 0, nil
	vm.Assigned = m.Index
	if vm.MoveTo == c.To {
		vm.MoveTo = ""
	}
	vm.Observed = Observed{Host: c.To, State: xenctl.StateRunning, Reason: "migrated", Time: m.At}
	return nil, nil
}

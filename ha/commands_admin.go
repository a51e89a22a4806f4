package ha

import (
	"context"
	"fmt"
	"slices"

	"github.com/xenha/xenha/xenctl"
)

// Administrative commands: membership records and the VM and volume
// catalogue. Placement, leases and fencing are the failover commands'.

func init() {
	registerCommand("host.join", func() command { return &hostJoin{} })
	registerCommand("host.leave", func() command { return &hostLeave{} })
	registerCommand("host.role", func() command { return &hostRole{} })
	registerCommand("vm.put", func() command { return &vmPut{} })
	registerCommand("vm.delete", func() command { return &vmDelete{} })
	registerCommand("volume.put", func() command { return &volumePut{} })
	registerCommand("volume.delete", func() command { return &volumeDelete{} })
}

// hostJoin registers a member (state joining; its first lease renewal makes
// it online). Re-registering the same incarnation only updates its address
// and role; another incarnation under the same ID is refused.
type hostJoin struct {
	Host Host `json:"host"`
}

func (*hostJoin) kind() string { return "host.join" }

func (c *hostJoin) apply(s *State, m applyMeta) (any, error) {
	h := c.Host
	if err := checkName(h.ID); err != nil {
		return nil, fmt.Errorf("host ID: %v: %w", err, ErrRefused)
	}
	if old, ok := s.Hosts[h.ID]; ok {
		if old.Incarnation != h.Incarnation {
			return nil, fmt.Errorf("host %s is already a member (another incarnation, state %s): its data directory was lost or replaced; remove it and join under a new ID: %w", h.ID, old.State, ErrIDInUse)
		}
		if old.State == HostLeft {
			return nil, fmt.Errorf("host %s left the cluster; IDs are not reused: join under a new ID: %w", h.ID, ErrIDInUse)
		}
		old.Addr, old.Role = h.Addr, h.Role
		return nil, nil
	}
	h.State, h.Since, h.Epoch = HostJoining, m.At, 1
	s.Hosts[h.ID] = &h
	return nil, nil
}

// hostLeave marks a member as gone (left voluntarily or removed). It bumps
// the host's epoch, as a fence does, so that a removed host that is in fact
// still alive finds its renewals refused and gives up its VMs: removal is
// not proof that it is off, only that it no longer belongs.
type hostLeave struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

func (*hostLeave) kind() string { return "host.leave" }

func (c *hostLeave) apply(s *State, m applyMeta) (any, error) {
	h, ok := s.Hosts[c.ID]
	if !ok {
		return nil, fmt.Errorf("host %s: %w", c.ID, ErrNotFound)
	}
	if h.State != HostLeft {
		h.State, h.Since = HostLeft, m.At
		h.Epoch++
	}
	return nil, nil
}

// hostRole records a member's new role after a promotion.
type hostRole struct {
	ID   string `json:"id"`
	Role Role   `json:"role"`
}

func (*hostRole) kind() string { return "host.role" }

func (c *hostRole) apply(s *State, _ applyMeta) (any, error) {
	h, ok := s.Hosts[c.ID]
	if !ok {
		return nil, fmt.Errorf("host %s: %w", c.ID, ErrNotFound)
	}
	h.Role = c.Role
	return nil, nil
}

// vmPut creates a VM or updates its spec, policy and Stopped wish. Placement
// (Host, OwnerEpoch), Pending, restarts and Observed belong to the failover
// code and are kept.
type vmPut struct {
	VM VM `json:"vm"`
}

func (*vmPut) kind() string { return "vm.put" }

func (c *vmPut) apply(s *State, _ applyMeta) (any, error) {
	v := c.VM
	if err := xenctl.CheckDomainName(v.Name); err != nil {
		return nil, fmt.Errorf("VM %q: %v: %w", v.Name, err, ErrRefused)
	}
	for _, id := range v.Spec.Volumes {
		if _, ok := s.Volumes[id]; !ok {
			return nil, fmt.Errorf("VM %s uses volume %q, which is not defined: add it first: %w", v.Name, id, ErrNotFound)
		}
	}
	if old, ok := s.VMs[v.Name]; ok {
		if old.Deleting {
			return nil, fmt.Errorf("VM %s is being deleted (%s): put it again once it is gone: %w", v.Name, old.Pending, ErrRefused)
		}
		old.UUID, old.Spec, old.Policy, old.Stopped = v.UUID, v.Spec, v.Policy, v.Stopped
		return nil, nil
	}
	s.VMs[v.Name] = &VM{Name: v.Name, UUID: v.UUID, Spec: v.Spec, Policy: v.Policy, Stopped: v.Stopped}
	return nil, nil
}

// vmDelete removes a VM. One that no host may run is removed at once; one
// that runs or may run is marked Deleting, stopped and unplaced, and the
// leader proposes vm.delete again once its host reported it stopped: a VM
// removed from the state while it runs would run on unmanaged for good.
type vmDelete struct {
	Name string `json:"name"`
}

func (*vmDelete) kind() string { return "vm.delete" }

// vmDeleting is vm.delete's result when the VM is not gone yet.
const vmDeleting = "deleting"

func (c *vmDelete) apply(s *State, m applyMeta) (any, error) {
	v, ok := s.VMs[c.Name]
	if !ok {
		return nil, fmt.Errorf("VM %s: %w", c.Name, ErrNotFound)
	}
	v.Stopped, v.Deleting = true, true
	if v.Host != "" && v.Migrating == nil {
		if v.Observed.Host != v.Host {
			// Its host has not reported since it got the VM: it may be
			// starting it. Its report is needed before the VM may go.
			v.Observed = Observed{Host: v.Host, State: xenctl.StateUnknown, Reason: "not reported since assigned", Time: m.At}
		}
		v.Pending = "deleting: waits until " + v.Host + " stopped it"
		v.Host, v.Released, v.MoveTo = "", m.Index, ""
	}
	if v.Host == "" && v.Migrating == nil && mayLeave(s, v) == nil {
		delete(s.VMs, c.Name)
		return nil, nil
	}
	if v.Migrating != nil {
		v.Pending = "deleting: waits for its live migration to " + v.Migrating.To + " to end"
	}
	return vmDeleting, nil
}

// volumePut creates a volume or updates its parameters; the writer and
// generation are the failover code's and are kept.
type volumePut struct {
	Volume Volume `json:"volume"`
}

func (*volumePut) kind() string { return "volume.put" }

func (c *volumePut) apply(s *State, _ applyMeta) (any, error) {
	v := c.Volume
	if v.ID == "" {
		return nil, fmt.Errorf("volume without ID: %w", ErrRefused)
	}
	if old, ok := s.Volumes[v.ID]; ok {
		gen, writer := old.Generation, old.Writer
		*old = v
		old.Generation, old.Writer = gen, writer
		return nil, nil
	}
	v.Writer = ""
	s.Volumes[v.ID] = &v
	return nil, nil
}

// volumeDelete removes a volume no VM uses.
type volumeDelete struct {
	ID string `json:"id"`
}

func (*volumeDelete) kind() string { return "volume.delete" }

func (c *volumeDelete) apply(s *State, _ applyMeta) (any, error) {
	if _, ok := s.Volumes[c.ID]; !ok {
		return nil, fmt.Errorf("volume %s: %w", c.ID, ErrNotFound)
	}
	for _, vm := range s.VMs {
		if slices.Contains(vm.Spec.Volumes, c.ID) {
			return nil, fmt.Errorf("volume %s is used by VM %s: %w", c.ID, vm.Name, ErrRefused)
		}
	}
	delete(s.Volumes, c.ID)
	return nil, nil
}

// PutVM creates a protected VM or updates its spec and policy. It returns
// once the change is committed and applied on this member.
func (c *Cluster) PutVM(ctx context.Context, vm VM) error {
	_, err := c.propose(ctx, &vmPut{VM: vm})
	return err
}

// DeleteVM removes a VM from the pool. A VM that no host may run (never
// placed, or stopped and reported stopped after it was unplaced) is removed
// at once. A VM that runs or may still run is stopped first: it is marked
// Deleting (and Stopped), taken off its host, and removed once that host
// reported it stopped, or left, or was fenced; DeleteVM returns when that
// is committed, not when the VM is gone (Pending says what it waits for).
// Its domain definition stays on the hypervisor, shut off.
func (c *Cluster) DeleteVM(ctx context.Context, name string) error {
	_, err := c.propose(ctx, &vmDelete{Name: name})
	return err
}

// PutVolume creates a volume or updates its parameters.
func (c *Cluster) PutVolume(ctx context.Context, v Volume) error {
	_, err := c.propose(ctx, &volumePut{Volume: v})
	return err
}

// DeleteVolume removes a volume no VM uses.
func (c *Cluster) DeleteVolume(ctx context.Context, id string) error {
	_, err := c.propose(ctx, &volumeDelete{ID: id})
	return err
}

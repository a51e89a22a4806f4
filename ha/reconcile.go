package ha

import (
	"errors"
	"slices"
	"strings"

	"github.com/xenha/xenha/xenctl"
)

// The host agent's decision step, kept free of I/O: given what the cluster
// wants of this host, what the hypervisor reports and whether the lease
// holds, it returns the actions to take. agent.go carries them out. Keeping
// it pure lets every safety rule that lives on the host be table-tested:
// act only under a valid lease and the right epoch, never take an
// unreachable hypervisor for stopped VMs, block the network before anything
// else when isolating.

// leaseStatus is the agent's view of its own lease.
type leaseStatus int

const (
	leaseValid     leaseStatus = iota // renewed recently enough: act
	leaseIsolating                    // less than IsolationLead left (or gone): isolate
)

// actionKind is one thing the agent does to one domain.
type actionKind int

const (
	actStart    actionKind = iota + 1 // attach volumes, define, start (network unblocked after)
	actStop                           // not ours: shut down (destroyed after a grace)
	actDestroy                        // not ours any more and paused, or isolation by destroy
	actPause                          // isolation by pause
	actShutdown                       // isolation by graceful shutdown
	actResume                         // lease regained with the same epoch: resume
	actMigrate                        // live-migrate to the target of the VM's migration
)

func (k actionKind) String() string {
	return [...]string{"", "start", "stop", "destroy", "pause", "shutdown", "resume", "migrate"}[k]
}

// action is one step of a plan.
type action struct {
	Kind actionKind
	VM   string
}

func (a action) String() string { return a.Kind.String() + " " + a.VM }

// reconcileInput is everything the decision depends on.
type reconcileInput struct {
	Epoch uint64
	Lease leaseStatus
	// Desired are the VMs assigned to this host at its epoch and not stopped.
	Desired map[string]*VM
	// Managed are the names of every VM the cluster knows; the agent never
	// touches a domain outside it (dom0 tools, an operator's own guests).
	Managed map[string]bool
	// Domains is the hypervisor's inventory; DomainsErr is set when it could
	// not be read.
	Domains    []xenctl.Domain
	DomainsErr error
	// Started maps a VM to the mark under which this agent last started it:
	// a VM that stopped since is started again only under a new mark, that
	// is once the leader grants a restart (LocalRestarts grows) or gives the
	// VM to this host anew (Assigned moves).
	Started map[string]startMark
	// Paused maps a VM this agent paused while isolating to the epoch it
	// held then (informational: any paused VM that is ours is resumed).
	Paused map[string]uint64
	// Response is the isolation action in force (IsolatePause only when the
	// hypervisor implements xenctl.Pauser).
	Response IsolationAction
	// Outgoing are desired VMs being live-migrated away: migrated if they
	// run, never started here. Incoming are VMs being migrated here: never
	// stopped here while the migration lasts.
	Outgoing map[string]bool
	Incoming map[string]bool
}

// plan is the decision.
type plan struct {
	// Skip: the hypervisor is unreachable; do nothing to domains and report
	// nothing (an unreachable hypervisor never means stopped VMs).
	Skip bool
	// BlockAll: isolating; the guard blocks every VIF before any action.
	BlockAll bool
	Actions  []action
}

// reconcile decides. It does not modify in.
func reconcile(in reconcileInput) plan {
	var p plan
	if in.Lease != leaseValid {
		p.BlockAll = true
	}
	if in.DomainsErr != nil {
		// Whatever the error, the inventory is unknown: acting on a guess
		// could start a second copy. ErrUnavailable is the usual case; the
		// guard is still blocked above if the lease is going.
		p.Skip = true
		return p
	}
	byName := map[string]xenctl.Domain{}
	for _, d := range in.Domains {
		if in.Managed[d.Name] {
			byName[d.Name] = d
		}
	}

	if in.Lease != leaseValid {
		for _, name := range slices.Sorted(mapKeysD(byName)) {
			d := byName[name]
			if !d.State.Executing() && d.State != xenctl.StatePMSuspended {
				continue
			}
			switch in.Response {
			case IsolatePause:
				if d.State.Executing() {
					p.Actions = append(p.Actions, action{actPause, name})
				} else {
					p.Actions = append(p.Actions, action{actDestroy, name})
				}
			case IsolateShutdown:
				p.Actions = append(p.Actions, action{actShutdown, name})
			default:
				p.Actions = append(p.Actions, action{actDestroy, name})
			}
		}
		return p
	}

	// Stop what is not ours first: it frees memory for what is.
	for _, name := range slices.Sorted(mapKeysD(byName)) {
		d := byName[name]
		if in.Desired[name] != nil || !d.State.Active() || in.Incoming[name] {
			continue
		}
		if d.State == xenctl.StatePaused || d.State == xenctl.StatePMSuspended {
			// Paused by isolation and then given away, or frozen: it must
			// never run here again.
			p.Actions = append(p.Actions, action{actDestroy, name})
		} else {
			p.Actions = append(p.Actions, action{actStop, name})
		}
	}

	var starts []*VM
	for name, vm := range in.Desired {
		d, defined := byName[name]
		switch {
		case defined && d.State == xenctl.StatePaused && !in.Outgoing[name]:
			// Ours, at our epoch, under a valid lease: it cannot have run
			// anywhere else meanwhile (moving it needs a fence, which bumps
			// our epoch, or our own report that it stopped). Resume it even
			// if this agent did not pause it: a member restarted while
			// isolated must not leave its VMs frozen. xenha owns the run
			// state of its VMs; an operator stops one with VM.Stopped.
			p.Actions = append(p.Actions, action{actResume, name})
		case in.Outgoing[name]:
			if defined && d.State == xenctl.StateRunning {
				p.Actions = append(p.Actions, action{actMigrate, name})
			}
			// Not running here: the target may already run it; start nothing.
		case defined && d.State.Active():
			// Running (or shutting down / suspended by the guest): leave it.
		default:
			m, started := in.Started[name]
			if !started || m != markOf(vm) {
				starts = append(starts, vm)
			}
		}
	}
	slices.SortFunc(starts, placementLess)
	for _, vm := range starts {
		p.Actions = append(p.Actions, action{actStart, vm.Name})
	}
	return p
}

// startMark identifies one start of a VM by this host's agent. Counting
// restarts alone is not enough: a VM taken off this host (maintenance, a
// drain) and given back with its restart count reset to the same value
// would never be started again, as the leader grants no restart to a VM
// with MaxLocalRestarts 0 and has nowhere else to put it.
type startMark struct {
	Assigned uint64
	Restarts int
}

func markOf(vm *VM) startMark { return startMark{Assigned: vm.Assigned, Restarts: vm.LocalRestarts} }

func mapKeysD[V any](m map[string]V) func(func(string) bool) { return mapKeys(m) }

// unavailable reports whether err means the hypervisor did not answer.
func unavailable(err error) bool { return errors.Is(err, xenctl.ErrUnavailable) }

// observations turns an inventory into the VM report: every managed VM that
// runs here or is assigned here, with desired ones that have no domain
// reported as shut off. A desired VM that is not active and that this agent
// has not yet tried to start under its current assignment is left out: its
// state (a definition left shut off by an earlier stay here, or no domain
// yet) predates the assignment, and the leader would take it for the
// assignment's failure and move the VM away before it was ever started.
func observations(in reconcileInput) map[string]ObservedVM {
	out := map[string]ObservedVM{}
	for _, d := range in.Domains {
		if in.Managed[d.Name] {
			out[d.Name] = ObservedVM{VM: d.Name, State: d.State, Reason: d.Reason}
		}
	}
	for name, vm := range in.Desired {
		o, ok := out[name]
		if ok && o.State.Active() {
			continue
		}
		if m, started := in.Started[name]; !started || m != markOf(vm) {
			delete(out, name)
			continue
		}
		if !ok {
			out[name] = ObservedVM{VM: name, State: xenctl.StateShutoff, Reason: "not defined here"}
		}
	}
	return out
}

// planString renders a plan for tests and logs.
func planString(p plan) string {
	var parts []string
	if p.Skip {
		parts = append(parts, "skip")
	}
	if p.BlockAll {
		parts = append(parts, "block-all")
	}
	for _, a := range p.Actions {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, "; ")
}

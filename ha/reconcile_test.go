package ha

import (
	"fmt"
	"testing"

	"github.com/xenha/xenha/xenctl"
)

func TestReconcile(t *testing.T) {
	vm := func(name string, restarts int, prio int) *VM {
		return &VM{Name: name, LocalRestarts: restarts, Policy: Policy{Restart: RestartAlways, Priority: prio}}
	}
	dom := func(name string, st xenctl.State) xenctl.Domain { return xenctl.Domain{Name: name, State: st} }
	managed := map[string]bool{"a": true, "b": true, "c": true, "gone": true}
	tests := []struct {
		name string
		in   reconcileInput
		want string
	}{
		{
			name: "start what is assigned and absent, higher priority first",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 1), "b": vm("b", 0, 9)},
				Domains: []xenctl.Domain{dom("a", xenctl.StateShutoff)}},
			want: "start b; start a",
		},
		{
			name: "leave running VMs and foreign domains alone",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 0)},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning), dom("operator-own", xenctl.StateRunning)}},
			want: "",
		},
		{
			name: "stop what is no longer ours before starting",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 0)},
				Domains: []xenctl.Domain{dom("b", xenctl.StateRunning), dom("c", xenctl.StatePaused), dom("gone", xenctl.StateShutoff)}},
			want: "stop b; destroy c; start a",
		},
		{
			name: "hypervisor unavailable: nothing, never taken for stopped",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 0)},
				DomainsErr: fmt.Errorf("list: %w", xenctl.ErrUnavailable)},
			want: "skip",
		},
		{
			name: "hypervisor unavailable while isolating: still block the network",
			in: reconcileInput{Lease: leaseIsolating, Desired: map[string]*VM{"a": vm("a", 0, 0)},
				DomainsErr: fmt.Errorf("list: %w", xenctl.ErrUnavailable)},
			want: "skip; block-all",
		},
		{
			name: "a crashed VM waits for the leader's restart grant",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 0)}, Started: map[string]startMark{"a": {}},
				Domains: []xenctl.Domain{dom("a", xenctl.StateCrashed)}},
			want: "",
		},
		{
			name: "a granted restart starts it again",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 1, 0)}, Started: map[string]startMark{"a": {}},
				Domains: []xenctl.Domain{dom("a", xenctl.StateCrashed)}},
			want: "start a",
		},
		{
			name: "a VM given back to this host is started again without a restart grant",
			in: reconcileInput{Desired: map[string]*VM{"a": {Name: "a", Assigned: 9, Policy: Policy{Restart: RestartAlways}}},
				Started: map[string]startMark{"a": {Assigned: 4}},
				Domains: []xenctl.Domain{dom("a", xenctl.StateShutoff)}},
			want: "start a",
		},
		{
			name: "isolate by pause: block first, pause executing VMs",
			in: reconcileInput{Lease: leaseIsolating, Response: IsolatePause, Desired: map[string]*VM{"a": vm("a", 0, 0)},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning), dom("b", xenctl.StateShuttingDown), dom("c", xenctl.StateShutoff)}},
			want: "block-all; pause a; pause b",
		},
		{
			name: "isolate by destroy starts nothing",
			in: reconcileInput{Lease: leaseIsolating, Response: IsolateDestroy, Desired: map[string]*VM{"a": vm("a", 0, 0), "c": vm("c", 0, 0)},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning)}},
			want: "block-all; destroy a",
		},
		{
			name: "isolate by shutdown",
			in: reconcileInput{Lease: leaseIsolating, Response: IsolateShutdown,
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning)}},
			want: "block-all; shutdown a",
		},
		{
			name: "lease back at the same epoch: resume what we paused",
			in: reconcileInput{Epoch: 4, Paused: map[string]uint64{"a": 4}, Desired: map[string]*VM{"a": vm("a", 0, 0)},
				Domains: []xenctl.Domain{dom("a", xenctl.StatePaused)}},
			want: "resume a",
		},
		{
			name: "lease back at a new epoch: the paused copy is no longer ours and is destroyed",
			in: reconcileInput{Epoch: 5, Paused: map[string]uint64{"a": 4}, Desired: map[string]*VM{},
				Domains: []xenctl.Domain{dom("a", xenctl.StatePaused)}},
			want: "destroy a",
		},
		{
			name: "outgoing live migration: migrate if it runs, never start it",
			in: reconcileInput{Desired: map[string]*VM{"a": vm("a", 0, 0), "b": vm("b", 0, 0)}, Outgoing: map[string]bool{"a": true, "b": true},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning)}},
			want: "migrate a",
		},
		{
			name: "incoming live migration is not stopped",
			in: reconcileInput{Desired: map[string]*VM{}, Incoming: map[string]bool{"a": true},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning)}},
			want: "",
		},
		{
			name: "an incoming VM is still isolated with the rest",
			in: reconcileInput{Lease: leaseIsolating, Response: IsolateDestroy, Incoming: map[string]bool{"a": true},
				Domains: []xenctl.Domain{dom("a", xenctl.StateRunning)}},
			want: "block-all; destroy a",
		},
		{
			name: "a paused VM that is ours is resumed even if another incarnation of the agent paused it",
			in: reconcileInput{Epoch: 4, Desired: map[string]*VM{"a": vm("a", 0, 0)},
				Domains: []xenctl.Domain{dom("a", xenctl.StatePaused)}},
			want: "resume a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Managed = managed
			if got := planString(reconcile(tt.in)); got != tt.want {
				t.Errorf("plan = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestObservations(t *testing.T) {
	in := reconcileInput{
		Managed: map[string]bool{"a": true, "b": true},
		Desired: map[string]*VM{"a": {Name: "a"}, "b": {Name: "b"}},
		Domains: []xenctl.Domain{{Name: "a", State: xenctl.StateRunning}, {Name: "x", State: xenctl.StateRunning}},
		Started: map[string]startMark{"b": {}},
	}
	obs := observations(in)
	if len(obs) != 2 || obs["a"].State != xenctl.StateRunning || obs["b"].State != xenctl.StateShutoff {
		t.Fatalf("observations = %+v, want a running, b shut off, nothing of x", obs)
	}
}

// A VM given back to a host that keeps its shut-off definition from an
// earlier stay is not reported shut off until the agent tried to start it
// under the new assignment: the leader would take the old state for the
// new assignment's failure and move the VM on, and back, for good.
func TestObservationsLeaveOutStateFromBeforeTheAssignment(t *testing.T) {
	in := reconcileInput{
		Managed: map[string]bool{"back": true, "new": true, "failed": true},
		Desired: map[string]*VM{"back": {Name: "back", Assigned: 9}, "new": {Name: "new", Assigned: 9}, "failed": {Name: "failed", Assigned: 9}},
		Domains: []xenctl.Domain{{Name: "back", State: xenctl.StateShutoff}},
		Started: map[string]startMark{"back": {Assigned: 4}, "failed": {Assigned: 9}},
	}
	obs := observations(in)
	if _, ok := obs["back"]; ok {
		t.Errorf("back reported %s from its earlier stay before it was started again", obs["back"].State)
	}
	if _, ok := obs["new"]; ok {
		t.Errorf("new reported %s before it was ever started", obs["new"].State)
	}
	if obs["failed"].State != xenctl.StateShutoff {
		t.Errorf("failed (started under its assignment, no domain) reported %+v, want shut off", obs["failed"])
	}
}

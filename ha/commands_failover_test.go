package ha

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// cmdWorld applies commands straight to a State, the way every member's FSM
// does, with increasing indexes and times.
type cmdWorld struct {
	t     *testing.T
	s     *State
	index uint64
	at    time.Time
}

func newCmdWorld(t *testing.T) *cmdWorld {
	s := &State{Hosts: map[string]*Host{}, VMs: map[string]*VM{}, Volumes: map[string]*Volume{}, Requests: map[string]uint64{}}
	for _, h := range []string{"h1", "h2", "h3"} {
		s.Hosts[h] = &Host{ID: h, Role: RoleVoter, State: HostOnline, Capacity: Capacity{MemoryKiB: 8 * gib, VCPUs: 8}}
	}
	s.Hosts["w"] = &Host{ID: "w", Role: RoleWitness, State: HostOnline}
	s.Volumes["disk-a"] = &Volume{Volume: storage.Volume{ID: "disk-a", Kind: "fake", Generation: 1}, Writer: "h1"}
	s.VMs["a"] = &VM{Name: "a", Host: "h1", Spec: VMSpec{MemoryKiB: gib, VCPUs: 1, Volumes: []string{"disk-a"}}, Policy: Policy{Restart: RestartAlways, MaxLocalRestarts: 2}}
	s.VMs["b"] = &VM{Name: "b", Host: "h2", Spec: VMSpec{MemoryKiB: gib, VCPUs: 1}, Policy: Policy{Restart: RestartAlways}}
	return &cmdWorld{t: t, s: s, at: time.Unix(1_800_000_000, 0)}
}

// do encodes, decodes and applies cmd, as the log would, and checks that a
// refusal left the state unchanged.
func (w *cmdWorld) do(cmd command) (any, error) {
	w.t.Helper()
	w.index++
	w.at = w.at.Add(100 * time.Millisecond)
	data, err := encodeCommand(cmd, "", w.at)
	if err != nil {
		w.t.Fatalf("encode %s: %v", cmd.kind(), err)
	}
	dec, env, err := decodeCommand(data)
	if err != nil {
		w.t.Fatalf("decode %s: %v", cmd.kind(), err)
	}
	if again, _ := json.Marshal(dec); string(again) != string(mustJSON(w.t, cmd)) {
		w.t.Fatalf("%s does not round-trip: %+v != %+v", cmd.kind(), dec, cmd)
	}
	before := snapState(w.t, w.s)
	res, err := dec.apply(w.s, applyMeta{Index: w.index, At: env.At})
	if err != nil {
		if !errors.Is(err, ErrRefused) {
			w.t.Fatalf("%s: refusal %v does not wrap ErrRefused", cmd.kind(), err)
		}
		if !reflect.DeepEqual(before, snapState(w.t, w.s)) {
			w.t.Fatalf("%s was refused (%v) but changed the state", cmd.kind(), err)
		}
	}
	return res, err
}

func (w *cmdWorld) must(cmd command) any {
	w.t.Helper()
	res, err := w.do(cmd)
	if err != nil {
		w.t.Fatalf("%s %+v: %v", cmd.kind(), cmd, err)
	}
	return res
}

func (w *cmdWorld) refused(cmd command, sentinel error) {
	w.t.Helper()
	_, err := w.do(cmd)
	if err == nil {
		w.t.Fatalf("%s %+v was applied, want a refusal", cmd.kind(), cmd)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		w.t.Fatalf("%s: refusal %v, want %v", cmd.kind(), err, sentinel)
	}
}

func snapState(t *testing.T, s *State) *State {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestFailoverCommandsFenceBeforeRecover(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&renewCmd{Host: "h1", Epoch: 0})
	w.refused(&renewCmd{Host: "nobody", Epoch: 0}, ErrNotFound)
	w.refused(&renewCmd{Host: "h1", Epoch: 7}, ErrStaleEpoch)

	// h1 is healthy: its VM may not move, even to an eligible host.
	w.refused(&assignCmd{Moves: []Assignment{{"a", "h2"}}, Reason: "failover"}, nil)
	// Nothing may go to a witness.
	w.refused(&assignCmd{Moves: []Assignment{{"b", "w"}}}, nil)

	w.must(&suspectCmd{Host: "h1", Epoch: 0, Silence: 500 * time.Millisecond})
	if st := w.s.Hosts["h1"].State; st != HostSuspect {
		t.Fatalf("h1 is %s, want suspect", st)
	}
	w.refused(&suspectCmd{Host: "h1", Epoch: 0}, nil) // once per failure
	// Suspect is not fenced: still no move.
	w.refused(&assignCmd{Moves: []Assignment{{"a", "h2"}}}, nil)
	w.refused(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi", Manual: true}, nil) // no operator named
	w.must(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi", Evidence: "off", Attempts: []FenceAttempt{{Method: "ipmi"}}})
	h1 := w.s.Hosts["h1"]
	if h1.State != HostFenced || h1.Epoch != 1 || len(w.s.Fences) != 1 {
		t.Fatalf("after fence: h1 %s epoch %d, %d fence records; want fenced, epoch 1, 1 record", h1.State, h1.Epoch, len(w.s.Fences))
	}
	w.refused(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi"}, ErrStaleEpoch) // a second proof for one failure
	w.refused(&renewCmd{Host: "h1", Epoch: 0}, ErrStaleEpoch)
	w.refused(&observedCmd{Host: "h1", Epoch: 0, VMs: []ObservedVM{{VM: "a", State: xenctl.StateRunning}}}, ErrStaleEpoch)
	w.refused(&assignCmd{Moves: []Assignment{{"a", "h1"}}}, nil) // fenced hosts get nothing

	w.must(&assignCmd{Moves: []Assignment{{"a", "h3"}}, Reason: "failover"})
	a := w.s.VMs["a"]
	if a.Host != "h3" || a.OwnerEpoch != 0 {
		t.Fatalf("a on %s epoch %d, want h3 epoch 0", a.Host, a.OwnerEpoch)
	}
	if v := w.s.Volumes["disk-a"]; v.Writer != "h3" || v.Generation != 2 {
		t.Fatalf("disk-a writer %s generation %d, want h3 and 2", v.Writer, v.Generation)
	}
	w.must(&observedCmd{Host: "h3", Epoch: 0, VMs: []ObservedVM{{VM: "a", State: xenctl.StateRunning, Attached: w.at}}})
	inc := w.s.Incidents[0]
	if inc.Closed.IsZero() {
		t.Fatalf("incident still open after every VM runs:\n%s", inc.Timeline(false))
	}
	var names []string
	for _, p := range inc.Phases {
		names = append(names, p.Name)
	}
	if want := []string{PhaseDetect, PhaseFence, PhaseProof, PhasePlace, PhaseStorage, PhaseStart}; !reflect.DeepEqual(names, want) {
		t.Fatalf("phases %v, want %v", names, want)
	}
	// h1 comes back and registers at its new epoch.
	w.refused(&registerCmd{Host: "h1", Epoch: 0}, ErrStaleEpoch)
	w.must(&registerCmd{Host: "h1", Epoch: 1})
	w.must(&renewCmd{Host: "h1", Epoch: 1})
	if h1.State != HostOnline {
		t.Fatalf("h1 is %s after registering, want online", h1.State)
	}
}

func TestFailoverCommandsFlappingHostIsNotFenced(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&suspectCmd{Host: "h1", Epoch: 0})
	w.must(&renewCmd{Host: "h1", Epoch: 0})
	if st := w.s.Hosts["h1"].State; st != HostOnline {
		t.Fatalf("h1 is %s after renewing while suspect, want online", st)
	}
	if w.s.Incidents[0].Closed.IsZero() {
		t.Fatal("the incident of a host that came back is still open")
	}
	// An operator may not acknowledge a fence for a host that renews.
	w.refused(&fenceCmd{Host: "h1", Epoch: 0, Method: "manual", Manual: true, Operator: "ops"}, nil)
	// A second failure opens a second incident; a proof that lands anyway
	// is committed, because it is the truth.
	w.must(&suspectCmd{Host: "h1", Epoch: 0})
	w.must(&renewCmd{Host: "h1", Epoch: 0})
	w.must(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi"})
	if len(w.s.Incidents) != 2 || w.s.Hosts["h1"].Epoch != 1 {
		t.Fatalf("%d incidents, epoch %d; want 2 and 1", len(w.s.Incidents), w.s.Hosts["h1"].Epoch)
	}
}

func TestFailoverCommandsManualAck(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&suspectCmd{Host: "h2", Epoch: 0})
	w.must(&fenceFailedCmd{Host: "h2", Epoch: 0, Err: "BMC unreachable", Retry: time.Second, Attempts: []FenceAttempt{{Method: "ipmi", Err: "unreachable"}}})
	w.must(&fenceCmd{Host: "h2", Epoch: 0, Method: "manual", Manual: true, Operator: "alice", Evidence: "powered off at the PDU"})
	rec := w.s.Fences[0]
	if !rec.Manual || rec.Operator != "alice" {
		t.Fatalf("fence record %+v, want manual by alice", rec)
	}
	if got := len(w.s.Incidents[0].Attempts); got != 1 {
		t.Fatalf("incident keeps %d attempts, want the failed one", got)
	}
}

func TestFailoverCommandsReleaseWaitsForStop(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&observedCmd{Host: "h2", Epoch: 0, VMs: []ObservedVM{{VM: "b", State: xenctl.StateRunning}}})
	w.refused(&releaseCmd{VM: "b", Host: "h1"}, nil)
	w.refused(&releaseCmd{VM: "b", Host: "h2", MoveTo: "w"}, nil)
	w.must(&releaseCmd{VM: "b", Host: "h2", MoveTo: "h3", Reason: "migrate"})
	w.refused(&assignCmd{Moves: []Assignment{{"b", "h3"}}}, nil) // still running on h2
	// A report from a view older than the release proves nothing: h2 may
	// have started it again after looking.
	w.must(&observedCmd{Host: "h2", Epoch: 0, View: 1, VMs: []ObservedVM{{VM: "b", State: xenctl.StateShutoff}}})
	w.refused(&assignCmd{Moves: []Assignment{{"b", "h3"}}}, nil)
	w.must(&observedCmd{Host: "h2", Epoch: 0, View: w.index, VMs: []ObservedVM{{VM: "b", State: xenctl.StateShutoff}}})
	w.must(&assignCmd{Moves: []Assignment{{"b", "h3"}}, Reason: "migrate"})
	// The old host's later word that it is shut off is ignored; its word that
	// it runs it is not.
	w.must(&observedCmd{Host: "h3", Epoch: 0, VMs: []ObservedVM{{VM: "b", State: xenctl.StateRunning}}})
	w.must(&observedCmd{Host: "h1", Epoch: 0, VMs: []ObservedVM{{VM: "b", State: xenctl.StateShutoff}}})
	if o := w.s.VMs["b"].Observed; o.Host != "h3" {
		t.Fatalf("observed %+v, want h3's report to stand", o)
	}
}

// A VM released from a host that has not reported it since it was given it
// may run there (the host may have started it and be cut off before its
// report landed): it is placed again only once that host said it stopped.
func TestFailoverCommandsReleaseBeforeAnyReportWaits(t *testing.T) {
	w := newCmdWorld(t) // b is on h2, which has not reported it yet
	w.must(&releaseCmd{VM: "b", Host: "h2", MoveTo: "h1", Reason: "migrate"})
	w.refused(&assignCmd{Moves: []Assignment{{"b", "h1"}}}, nil) // h2 may run it
	w.must(&observedCmd{Host: "h2", Epoch: 0, View: w.index, VMs: []ObservedVM{{VM: "b", State: xenctl.StateShutoff}}})
	w.must(&assignCmd{Moves: []Assignment{{"b", "h1"}}, Reason: "migrate"})
}

func TestFailoverCommandsLocalRestart(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&restartCmd{VM: "a", Host: "h1", Count: 0})
	w.refused(&restartCmd{VM: "a", Host: "h1", Count: 0}, nil) // a retry is not a second restart
	if n := w.s.VMs["a"].LocalRestarts; n != 1 {
		t.Fatalf("LocalRestarts = %d, want 1", n)
	}
	// Relocation from a healthy host: even its word that the VM crashed
	// does not let the VM move; a release and a later report do.
	w.must(&observedCmd{Host: "h1", Epoch: 0, View: w.index, VMs: []ObservedVM{{VM: "a", State: xenctl.StateCrashed}}})
	w.refused(&assignCmd{Moves: []Assignment{{"a", "h2"}}, Reason: "relocate"}, nil)
	w.must(&releaseCmd{VM: "a", Host: "h1", MoveTo: "h2", Reason: "crashed"})
	w.refused(&assignCmd{Moves: []Assignment{{"a", "h2"}}, Reason: "relocate"}, nil)
	w.must(&observedCmd{Host: "h1", Epoch: 0, View: w.index, VMs: []ObservedVM{{VM: "a", State: xenctl.StateCrashed}}})
	w.must(&assignCmd{Moves: []Assignment{{"a", "h2"}}, Reason: "relocate"})
	if n := w.s.VMs["a"].LocalRestarts; n != 0 {
		t.Fatalf("LocalRestarts = %d after relocation, want 0", n)
	}
}

func TestFailoverCommandsMaintenance(t *testing.T) {
	w := newCmdWorld(t)
	w.must(&maintenanceCmd{Host: "h3", On: true})
	w.refused(&assignCmd{Moves: []Assignment{{"b", "h3"}}}, nil)
	w.must(&maintenanceCmd{Host: "h3", On: false})
	w.must(&suspectCmd{Host: "h1", Epoch: 0})
	w.refused(&maintenanceCmd{Host: "h1", On: true}, nil)
	// A host that dies in maintenance is suspected and fenced like any other.
	w.must(&maintenanceCmd{Host: "h3", On: true})
	w.must(&suspectCmd{Host: "h3", Epoch: 0})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Any body decoded into any failover command is applied or refused without
// a panic, and a refusal leaves the state exactly as it was.
func FuzzFailoverCommands(f *testing.F) {
	kinds := []string{"lease.renew", "host.register", "host.suspect", "host.fence", "host.fence-failed",
		"host.maintenance", "vm.assign", "vm.observed", "vm.restart", "vm.release", "vm.migrate", "vm.migrated", "incident.close"}
	f.Add(uint8(0), []byte(`{"host":"h1","epoch":0}`))
	f.Add(uint8(3), []byte(`{"host":"h1","epoch":0,"method":"ipmi","manual":true,"operator":"x"}`))
	f.Add(uint8(6), []byte(`{"moves":[{"vm":"a","host":"h2"},{"vm":"a","host":"h3"}],"unplaced":{"b":"x"}}`))
	f.Add(uint8(7), []byte(`{"host":"h2","epoch":0,"view":9,"vms":[{"vm":"b","state":2}]}`))
	f.Add(uint8(9), []byte(`{"vm":"b","host":"h2","move_to":"w"}`))
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := kinds[int(k)%len(kinds)]
		env, _ := json.Marshal(envelope{V: envelopeVersion, Kind: kind, Body: body})
		cmd, _, err := decodeCommand(env)
		if err != nil {
			return // malformed bodies halt the FSM; covered by core's tests
		}
		w := newCmdWorld(t)
		// Half the runs start from a state mid-incident.
		if k%2 == 1 {
			w.must(&suspectCmd{Host: "h1", Epoch: 0})
		}
		w.do(cmd)
	})
}

func TestFailoverCommandsLiveMigration(t *testing.T) {
	w := newCmdWorld(t)
	w.s.Hosts["h2"].MigrateURI = "fake://h2"
	w.s.Hosts["h3"].MigrateURI = "fake://h3"
	w.refused(&migrateCmd{VM: "b", From: "h2", To: "h1"}, nil) // h1 cannot receive
	w.refused(&migrateCmd{VM: "a", From: "h1", To: "h3"}, nil) // a has volumes
	w.must(&migrateCmd{VM: "b", From: "h2", To: "h3"})
	w.refused(&releaseCmd{VM: "b", Host: "h2"}, nil)
	// h2 dies mid-migration: b may already run on h3, so it may go only there.
	w.must(&suspectCmd{Host: "h2", Epoch: 0})
	w.must(&fenceCmd{Host: "h2", Epoch: 0, Method: "ipmi"})
	w.refused(&assignCmd{Moves: []Assignment{{"b", "h1"}}}, nil)
	w.must(&assignCmd{Moves: []Assignment{{"b", "h3"}}})
	if b := w.s.VMs["b"]; b.Host != "h3" || b.Migrating != nil {
		t.Fatalf("b = %+v, want on h3 with no migration", b)
	}
	// A completed migration hands the VM over; a stale report is refused.
	w.refused(&migrateCmd{VM: "b", From: "h3", To: "h2"}, nil) // h2 is fenced
	w.s.Hosts["h1"].MigrateURI = "fake://h1"
	w.must(&migrateCmd{VM: "b", From: "h3", To: "h1"})
	w.refused(&migratedCmd{VM: "b", From: "h3", To: "h1", Epoch: 5}, nil)
	w.must(&migratedCmd{VM: "b", From: "h3", To: "h1", Epoch: 0, Err: "cpu mismatch"})
	if b := w.s.VMs["b"]; b.Host != "h3" || !strings.Contains(b.Pending, "cpu mismatch") {
		t.Fatalf("after a failed migration b = %+v, want still on h3 with the error", b)
	}
	w.must(&migrateCmd{VM: "b", From: "h3", To: "h1"})
	w.must(&migratedCmd{VM: "b", From: "h3", To: "h1", Epoch: 0})
	if b := w.s.VMs["b"]; b.Host != "h1" || b.OwnerEpoch != 0 || b.Observed.Host != "h1" {
		t.Fatalf("after migration b = %+v, want on h1 at epoch 0", b)
	}
}

func TestFailoverCommandsIncidentClose(t *testing.T) {
	w := newCmdWorld(t)
	id := w.must(&suspectCmd{Host: "h1", Epoch: 0}).(string)
	w.refused(&incidentCloseCmd{ID: id}, nil) // a still waits
	w.refused(&incidentCloseCmd{ID: "nope"}, ErrNotFound)
	w.must(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi"})
	w.must(&assignCmd{Moves: []Assignment{{"a", "h3"}}})
	// h3 had reported a running before this incident saw it (no new report
	// will come): the leader's close command ends it.
	w.s.VMs["a"].Observed = Observed{Host: "h3", State: xenctl.StateRunning}
	res := w.must(&incidentCloseCmd{ID: id})
	if tl, ok := res.([]string); !ok || len(tl) != 1 || !strings.Contains(tl[0], "closed after") {
		t.Fatalf("result %v, want the closed timeline", res)
	}
	w.refused(&incidentCloseCmd{ID: id}, nil) // once
}

// A verified power-off proves a host off only for its current epoch and the
// incident it was taken for; other proofs never do.
func TestFailoverCommandsVerifiedOffProof(t *testing.T) {
	w := newCmdWorld(t)
	off := "verified-off"
	inc := w.must(&suspectCmd{Host: "h2", Epoch: 0, Silence: time.Second}).(string)
	w.must(&fenceCmd{Host: "h2", Epoch: 0, Method: "ipmi", Evidence: "chassis off", Proof: off, Incident: inc})
	if h := w.s.Hosts["h2"]; !h.ProvenOff || h.Epoch != 1 {
		t.Fatalf("after a verified power-off: %+v, want proven off at epoch 1", h)
	}
	if got := w.s.Fences[len(w.s.Fences)-1].Proof; got != off {
		t.Fatalf("fence record proof %q, want %q", got, off)
	}
	w.must(&registerCmd{Host: "h2", Epoch: 1})
	if w.s.Hosts["h2"].ProvenOff {
		t.Fatal("a host that registered again is still proven off")
	}
	w.must(&assignCmd{Moves: []Assignment{{VM: "b", Host: "h2"}}})

	// A slow fencer's proof from the old epoch lands late: refused, and
	// nothing moves.
	w.refused(&fenceCmd{Host: "h2", Epoch: 0, Method: "ipmi", Evidence: "chassis off", Proof: off, Incident: inc}, ErrStaleEpoch)
	if h, vm := w.s.Hosts["h2"], w.s.VMs["b"]; h.ProvenOff || h.State != HostOnline || vm.Host != "h2" || vm.OwnerEpoch != 1 {
		t.Fatalf("after a stale proof: host %+v, vm %+v", h, vm)
	}

	// A power-off taken for an incident the host renewed out of: it may
	// have been switched on again and renewed since, so it proves nothing.
	old := w.must(&suspectCmd{Host: "h2", Epoch: 1, Silence: time.Second}).(string)
	w.must(&renewCmd{Host: "h2", Epoch: 1})
	w.must(&suspectCmd{Host: "h2", Epoch: 1, Silence: time.Second})
	w.must(&fenceCmd{Host: "h2", Epoch: 1, Method: "ipmi", Evidence: "chassis off", Proof: off, Incident: old})
	if h := w.s.Hosts["h2"]; h.ProvenOff || h.State != HostFenced {
		t.Fatalf("proof from an earlier incident: %+v, want fenced, not proven off", h)
	}

	// Unverified and self-fence proofs, and an operator's word, never do.
	for i, cmd := range []*fenceCmd{
		{Method: "libvirt", Evidence: "vanished"},
		{Method: "sbd", Evidence: "pill", Proof: "self-fence"},
		{Method: "manual", Evidence: "pulled the plug", Proof: off, Manual: true, Operator: "ann"},
	} {
		host := "h3"
		epoch := w.s.Hosts[host].Epoch
		if i > 0 {
			w.must(&registerCmd{Host: host, Epoch: epoch})
		}
		cmd.Host, cmd.Epoch = host, epoch
		cmd.Incident = w.must(&suspectCmd{Host: host, Epoch: epoch, Silence: time.Second}).(string)
		w.must(cmd)
		if h := w.s.Hosts[host]; h.ProvenOff || h.State != HostFenced {
			t.Fatalf("%s proof: %+v, want fenced, not proven off", cmd.Method, h)
		}
	}
	w.refused(&fenceCmd{Host: "h1", Epoch: 0, Method: "ipmi", Evidence: "x", Proof: "probably-off"}, ErrRefused)
}

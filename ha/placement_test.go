package ha

import (
	"github.com/xenha/xenha/xenctl"
	"reflect"
	"strings"
	"testing"
)

const gib = 1 << 20 // KiB

func testHosts(caps map[string]Capacity) map[string]*Host {
	hs := map[string]*Host{}
	for id, c := range caps {
		hs[id] = &Host{ID: id, Role: RoleVoter, State: HostOnline, Capacity: c}
	}
	return hs
}

func testVM(name string, memGiB uint64, vcpus int, p Policy) *VM {
	if p.Restart == "" {
		p.Restart = RestartAlways
	}
	return &VM{Name: name, Spec: VMSpec{MemoryKiB: memGiB * gib, VCPUs: vcpus}, Policy: p}
}

func TestPlace(t *testing.T) {
	big := Capacity{MemoryKiB: 8 * gib, VCPUs: 8}
	tests := []struct {
		name     string
		hosts    map[string]*Host
		vms      []*VM
		want     []string
		assign   []Assignment
		unplaced map[string]string // VM -> substring of the reason
	}{
		{
			name:   "spread by free memory",
			hosts:  testHosts(map[string]Capacity{"h1": big, "h2": big}),
			vms:    []*VM{testVM("a", 2, 1, Policy{}), testVM("b", 2, 1, Policy{}), testVM("c", 2, 1, Policy{})},
			want:   []string{"a", "b", "c"},
			assign: []Assignment{{"a", "h1"}, {"b", "h2"}, {"c", "h1"}},
		},
		{
			name:   "preferred host first when it fits",
			hosts:  testHosts(map[string]Capacity{"h1": big, "h2": big, "h3": big}),
			vms:    []*VM{testVM("a", 2, 1, Policy{Preferred: []string{"h3", "h1"}})},
			want:   []string{"a"},
			assign: []Assignment{{"a", "h3"}},
		},
		{
			name:   "preferred host skipped when full",
			hosts:  testHosts(map[string]Capacity{"h1": big, "h2": {MemoryKiB: 1 * gib, VCPUs: 8}, "h3": big}),
			vms:    []*VM{testVM("a", 2, 1, Policy{Preferred: []string{"h2", "h3"}})},
			want:   []string{"a"},
			assign: []Assignment{{"a", "h3"}},
		},
		{
			name:  "priority wins scarce room, then order",
			hosts: testHosts(map[string]Capacity{"h1": {MemoryKiB: 4 * gib, VCPUs: 8}}),
			vms: []*VM{
				testVM("low", 2, 1, Policy{Priority: 1}),
				testVM("high-2", 1, 1, Policy{Priority: 5, Order: 2}),
				testVM("high-1", 1, 1, Policy{Priority: 5, Order: 1}),
			},
			want:     []string{"low", "high-2", "high-1"},
			assign:   []Assignment{{"high-1", "h1"}, {"high-2", "h1"}, {"low", "h1"}},
			unplaced: map[string]string{},
		},
		{
			name:  "restart before best-effort whatever the priority",
			hosts: testHosts(map[string]Capacity{"h1": {MemoryKiB: 2 * gib, VCPUs: 8}}),
			vms: []*VM{
				testVM("be", 2, 1, Policy{Restart: RestartBestEffort, Priority: 100}),
				testVM("r", 2, 1, Policy{Priority: 1}),
			},
			want:     []string{"be", "r"},
			assign:   []Assignment{{"r", "h1"}},
			unplaced: map[string]string{"be": "0 MiB free of the 2048 needed"},
		},
		{
			name:     "vcpu capacity",
			hosts:    testHosts(map[string]Capacity{"h1": {MemoryKiB: 8 * gib, VCPUs: 2}}),
			vms:      []*VM{testVM("a", 1, 2, Policy{}), testVM("b", 1, 1, Policy{})},
			want:     []string{"a", "b"},
			assign:   []Assignment{{"a", "h1"}},
			unplaced: map[string]string{"b": "0 vCPUs free of the 1 needed"},
		},
		{
			name:  "anti-affinity keeps a group apart",
			hosts: testHosts(map[string]Capacity{"h1": big, "h2": big}),
			vms: []*VM{
				testVM("db1", 1, 1, Policy{AntiAffinity: "db"}),
				testVM("db2", 1, 1, Policy{AntiAffinity: "db"}),
				testVM("db3", 1, 1, Policy{AntiAffinity: "db"}),
			},
			want:     []string{"db1", "db2", "db3"},
			assign:   []Assignment{{"db1", "h1"}, {"db2", "h2"}},
			unplaced: map[string]string{"db3": "h1 runs db1 (anti-affinity group db)"},
		},
		{
			name: "witness, suspect, fenced and maintenance hosts get nothing",
			hosts: map[string]*Host{
				"w":  {ID: "w", Role: RoleWitness, State: HostOnline, Capacity: big},
				"s":  {ID: "s", Role: RoleVoter, State: HostSuspect, Capacity: big},
				"f":  {ID: "f", Role: RoleVoter, State: HostFenced, Capacity: big},
				"m":  {ID: "m", Role: RoleVoter, State: HostMaintenance, Capacity: big},
				"ok": {ID: "ok", Role: RoleNonVoter, State: HostOnline, Capacity: Capacity{MemoryKiB: 1 * gib, VCPUs: 8}},
			},
			vms:      []*VM{testVM("a", 1, 1, Policy{Preferred: []string{"w", "s", "f", "m"}}), testVM("b", 1, 1, Policy{})},
			want:     []string{"a", "b"},
			assign:   []Assignment{{"a", "ok"}},
			unplaced: map[string]string{"b": "no capacity"},
		},
		{
			// Zero reads as "no figure": such a host is never counted as
			// unlimited.
			name:     "a host that reports no capacity gets nothing",
			hosts:    testHosts(map[string]Capacity{"h1": {}, "h2": {MemoryKiB: 8 * gib}}),
			vms:      []*VM{testVM("a", 1, 1, Policy{})},
			want:     []string{"a"},
			unplaced: map[string]string{"a": "capacity unknown"},
		},
		{
			name:     "no eligible host at all",
			hosts:    map[string]*Host{"w": {ID: "w", Role: RoleWitness, State: HostOnline}},
			vms:      []*VM{testVM("a", 1, 1, Policy{})},
			want:     []string{"a"},
			unplaced: map[string]string{"a": "no eligible host"},
		},
		{
			name:  "stopped and restart-off VMs are not placed",
			hosts: testHosts(map[string]Capacity{"h1": big}),
			vms: []*VM{
				func() *VM { v := testVM("st", 1, 1, Policy{}); v.Stopped = true; return v }(),
				testVM("off", 1, 1, Policy{Restart: RestartOff}),
			},
			want: []string{"st", "off"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &State{Hosts: tt.hosts, VMs: map[string]*VM{}}
			for _, v := range tt.vms {
				s.VMs[v.Name] = v
			}
			got := place(s, tt.want)
			if !reflect.DeepEqual(got.Assign, tt.assign) {
				t.Errorf("assign = %v, want %v", got.Assign, tt.assign)
			}
			if len(got.Unplaced) != len(tt.unplaced) {
				t.Errorf("unplaced = %v, want keys of %v", got.Unplaced, tt.unplaced)
			}
			for vm, sub := range tt.unplaced {
				if !strings.Contains(got.Unplaced[vm], sub) {
					t.Errorf("unplaced[%s] = %q, want it to contain %q", vm, got.Unplaced[vm], sub)
				}
			}
		})
	}
}

// A VM that stays put is charged to its host, and a moving VM frees its old
// host's room; the room that appears is used by the next round.
func TestPlaceChargesStayingVMsAndPlacesWhenRoomAppears(t *testing.T) {
	s := &State{
		Hosts: testHosts(map[string]Capacity{"h1": {MemoryKiB: 4 * gib, VCPUs: 8}, "h2": {MemoryKiB: 4 * gib, VCPUs: 8}}),
		VMs: map[string]*VM{
			"big1": testVM("big1", 3, 1, Policy{}),
			"big2": testVM("big2", 3, 1, Policy{}),
			"new":  testVM("new", 2, 1, Policy{}),
		},
	}
	s.VMs["big1"].Host, s.VMs["big2"].Host = "h1", "h2"
	p := place(s, []string{"new"})
	if len(p.Assign) != 0 || !strings.Contains(p.Unplaced["new"], "no capacity") {
		t.Fatalf("placed %v, unplaced %v; want new unplaced for lack of room", p.Assign, p.Unplaced)
	}
	s.VMs["big2"].Stopped = true
	p = place(s, []string{"new"})
	if want := []Assignment{{"new", "h2"}}; !reflect.DeepEqual(p.Assign, want) {
		t.Fatalf("after room appeared: assign = %v, want %v", p.Assign, want)
	}
	// A VM relocated from a healthy host (same epoch) never lands there
	// again; its own room there does not count against the others.
	s.VMs["big2"].Stopped = false
	s.VMs["new"].Stopped = true
	p = place(s, []string{"big1"})
	if len(p.Assign) != 0 {
		t.Fatalf("big1 relocated to %v although h2 is full and h1 is where it came from", p.Assign)
	}
	s.VMs["big2"].Stopped = true
	p = place(s, []string{"big1"})
	if want := []Assignment{{"big1", "h2"}}; !reflect.DeepEqual(p.Assign, want) {
		t.Fatalf("relocation: assign = %v, want %v", p.Assign, want)
	}
	// After a fence and re-registration (new epoch) it may go back.
	s.Hosts["h1"].Epoch = 1
	s.Hosts["h2"].State = HostFenced
	p = place(s, []string{"big1"})
	if want := []Assignment{{"big1", "h1"}}; !reflect.DeepEqual(p.Assign, want) {
		t.Fatalf("after re-registration: assign = %v, want %v", p.Assign, want)
	}
}

func FuzzPlaceNeverOvercommits(f *testing.F) {
	f.Add(uint64(4), uint64(3), 3, "g")
	f.Add(uint64(1), uint64(8), 0, "")
	f.Fuzz(func(t *testing.T, hostGiB, vmGiB uint64, n int, group string) {
		if n < 0 || n > 50 || hostGiB > 1<<20 || vmGiB > 1<<20 {
			return
		}
		s := &State{Hosts: testHosts(map[string]Capacity{"h1": {MemoryKiB: hostGiB * gib, VCPUs: 4}, "h2": {MemoryKiB: hostGiB * gib, VCPUs: 4}}), VMs: map[string]*VM{}}
		var want []string
		for i := range n {
			name := string(rune('a'+i%26)) + string(rune('a'+i/26))
			s.VMs[name] = testVM(name, vmGiB, 1, Policy{AntiAffinity: group})
			want = append(want, name)
		}
		p := place(s, want)
		used := map[string]uint64{}
		cpus := map[string]int{}
		groups := map[string]int{}
		for _, a := range p.Assign {
			used[a.Host] += s.VMs[a.VM].Spec.MemoryKiB
			cpus[a.Host]++
			groups[a.Host]++
		}
		for h, u := range used {
			if u > hostGiB*gib || cpus[h] > 4 || (group != "" && groups[h] > 1) {
				t.Fatalf("host %s over-committed: %d KiB, %d vCPUs, %d of group %q", h, u, cpus[h], groups[h], group)
			}
		}
		if len(p.Assign)+len(p.Unplaced) != n {
			t.Fatalf("%d assigned + %d unplaced != %d VMs", len(p.Assign), len(p.Unplaced), n)
		}
	})
}

// A restart VM without room makes room by stopping best-effort VMs, the
// lowest priority first, on the host where the fewest must go.
func TestPlaceEvictsBestEffortForRestart(t *testing.T) {
	s := &State{
		Hosts: testHosts(map[string]Capacity{"h1": {MemoryKiB: 4 * gib, VCPUs: 8}, "h2": {MemoryKiB: 3 * gib, VCPUs: 8}}),
		VMs: map[string]*VM{
			"be-low":  testVM("be-low", 2, 1, Policy{Restart: RestartBestEffort, Priority: 1}),
			"be-high": testVM("be-high", 2, 1, Policy{Restart: RestartBestEffort, Priority: 9}),
			"be-a":    testVM("be-a", 1, 1, Policy{Restart: RestartBestEffort}),
			"be-b":    testVM("be-b", 1, 1, Policy{Restart: RestartBestEffort}),
			"r":       testVM("r", 2, 1, Policy{}),
			"r2":      testVM("r2", 8, 1, Policy{}),
		},
	}
	for vm, h := range map[string]string{"be-low": "h1", "be-high": "h1", "be-a": "h2", "be-b": "h2"} {
		s.VMs[vm].Host = h
	}
	p := place(s, []string{"r", "r2"})
	if len(p.Assign) != 0 || !reflect.DeepEqual(p.Evict, []string{"be-low"}) {
		t.Fatalf("assign %v evict %v, want nothing placed and be-low evicted", p.Assign, p.Evict)
	}
	if !strings.Contains(p.Unplaced["r"], "making room on h1") || !strings.Contains(p.Unplaced["r2"], "no capacity") {
		t.Fatalf("unplaced %v", p.Unplaced)
	}
	// While be-low still runs on h1 after its release, its room is taken.
	s.VMs["be-low"].Host = ""
	s.VMs["be-low"].Observed = Observed{Host: "h1", State: xenctl.StateRunning}
	if p := place(s, []string{"r"}); len(p.Assign) != 0 || len(p.Evict) != 0 {
		t.Fatalf("placed %v, evicted %v before the evicted VM stopped; want to wait", p.Assign, p.Evict)
	}
	s.VMs["be-low"].Observed.State = xenctl.StateShutoff
	if p := place(s, []string{"r"}); !reflect.DeepEqual(p.Assign, []Assignment{{"r", "h1"}}) {
		t.Fatalf("after the eviction: %v, want r on h1", p.Assign)
	}
}

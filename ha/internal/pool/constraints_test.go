package pool

import (
	"strings"
	"testing"
	"time"
)

// mib is a mebibyte in the KiB the model counts memory in.
const mib = 1024

// testRound is a round over hosts h1 (4096 MiB, 4 vCPUs, tag ssd, live),
// h2 (1024 MiB, 1 vCPU) and w (witness), with the given VMs placed.
func testRound(t *testing.T, vms []*VM, rules Rules, mutate func(s *State)) (*State, *round) {
	t.Helper()
	s := NewState(defaultTimings())
	s.Hosts["h1"] = &Host{ID: "h1", State: HostOnline, MemKiB: 4096 * mib, CPUs: 4, Tags: []string{"ssd"}, LiveMigrate: true}
	s.Hosts["h2"] = &Host{ID: "h2", State: HostOnline, MemKiB: 1024 * mib, CPUs: 1}
	s.Hosts["w"] = &Host{ID: "w", State: HostOnline, Witness: true}
	s.Volumes["san1"] = &Volume{ID: "san1", Pool: "san"}
	s.Volumes["r0"] = &Volume{ID: "r0", Replicas: []string{"h2"}}
	for _, vm := range vms {
		if vm.Restart == "" {
			vm.Restart = RestartAlways
		}
		s.VMs[vm.Name] = vm
	}
	s.Rules = rules
	if mutate != nil {
		mutate(s)
	}
	return s, newRound(s, map[string]bool{"x": true})
}

func TestFilters(t *testing.T) {
	tests := []struct {
		filter string
		vm     *VM
		others []*VM
		rules  Rules
		mutate func(s *State)
		// want maps a host to the filter's reason ("" : accepted); a
		// substring is enough.
		want map[string]string
	}{
		{filter: "host-state", vm: &VM{Name: "x"},
			mutate: func(s *State) { s.Hosts["h2"].State = HostMaintenance },
			want:   map[string]string{"h1": "", "h2": "is maintenance", "w": "is a witness"}},
		{filter: "relocation", vm: &VM{Name: "x"}, mutate: nil,
			want: map[string]string{"h1": "", "h2": ""}},
		{filter: "capacity", vm: &VM{Name: "x", MemKiB: 2048 * mib, CPUs: 1},
			want: map[string]string{"h1": "", "h2": "1024 MiB free of the 2048 needed"}},
		{filter: "capacity", vm: &VM{Name: "x", MemKiB: 512 * mib, CPUs: 2},
			want: map[string]string{"h1": "", "h2": "1 vCPUs free of the 2 needed"}},
		{filter: "capacity", vm: &VM{Name: "x", MemKiB: 512 * mib, CPUs: 1}, others: []*VM{{Name: "o", MemKiB: 3800 * mib, Host: "h1"}},
			want: map[string]string{"h1": "296 MiB free", "h2": ""}},
		{filter: "capacity", vm: &VM{Name: "x", MemKiB: 512 * mib, CPUs: 1},
			others: []*VM{{Name: "o", MemKiB: 3800 * mib, Observed: Observed{Host: "h1", State: Running}}},
			want:   map[string]string{"h1": "296 MiB free", "h2": ""}}, // released, still stopping on h1
		{filter: "capacity", vm: &VM{Name: "x", MemKiB: 512 * mib, CPUs: 1},
			mutate: func(s *State) { s.Hosts["h2"].CPUs = 0 }, // reported no vCPUs: unknown, never unlimited
			want:   map[string]string{"h1": "", "h2": "capacity unknown"}},
		{filter: "host-tags", vm: &VM{Name: "x", Tags: []string{"ssd"}},
			want: map[string]string{"h1": "", "h2": "lacks tag ssd"}},
		{filter: "storage", vm: &VM{Name: "x", Volumes: []string{"san1"}},
			mutate: func(s *State) { s.Hosts["h1"].Lost = []string{"san"} },
			want:   map[string]string{"h1": "cannot reach storage pool san", "h2": ""}},
		{filter: "drbd-replica", vm: &VM{Name: "x", Volumes: []string{"r0"}},
			want: map[string]string{"h1": "holds no replica of volume r0", "h2": ""}},
		{filter: "node-affinity", vm: &VM{Name: "x"},
			rules: Rules{Nodes: []NodeAffinity{{Name: "pin", VMs: []string{"x"}, Hosts: map[string]int{"h2": 1}, Strict: true}}},
			want:  map[string]string{"h1": "not in strict rule pin", "h2": ""}},
		{filter: "node-affinity", vm: &VM{Name: "x"},
			rules: Rules{Nodes: []NodeAffinity{{Name: "pin", VMs: []string{"x"}, Hosts: map[string]int{"h2": 1}}}},
			want:  map[string]string{"h1": "", "h2": ""}}, // preferred rules only score
		{filter: "anti-affinity", vm: &VM{Name: "x", AntiAffinity: "g"}, others: []*VM{{Name: "o", AntiAffinity: "g", Host: "h1"}},
			want: map[string]string{"h1": "runs o (anti-affinity group g)", "h2": ""}},
		{filter: "anti-affinity", vm: &VM{Name: "x"}, others: []*VM{{Name: "o", Host: "h2"}},
			rules: Rules{Resources: []ResourceAffinity{{Name: "apart", VMs: []string{"x", "o"}}}},
			want:  map[string]string{"h1": "", "h2": "runs o (apart)"}},
		{filter: "colocation", vm: &VM{Name: "x", Affinity: "g"}, others: []*VM{{Name: "o", Affinity: "g", Host: "h2"}},
			want: map[string]string{"h1": "is not h2, where o runs (affinity group g)", "h2": ""}},
		{filter: "colocation", vm: &VM{Name: "x"}, others: []*VM{{Name: "o"}},
			rules: Rules{Resources: []ResourceAffinity{{Name: "pair", VMs: []string{"x", "o"}, Together: true}}},
			want:  map[string]string{"h1": "", "h2": ""}}, // the peer is nowhere yet: no constraint
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			var f *Filter
			for i := range Filters {
				if Filters[i].Name == tt.filter {
					f = &Filters[i]
				}
			}
			if f == nil {
				t.Fatalf("no filter %q", tt.filter)
			}
			s, c := testRound(t, append([]*VM{tt.vm}, tt.others...), tt.rules, tt.mutate)
			for host, want := range tt.want {
				r := c.rooms[host]
				if r == nil { // a round leaves witnesses out; the filter refuses them too
					r = &room{h: s.Hosts[host]}
				}
				got := f.Reject(c, tt.vm, r)
				if (want == "") != (got == "") || !strings.Contains(got, want) {
					t.Errorf("%s on %s: %q, want %q", tt.filter, host, got, want)
				}
			}
		})
	}
	t.Run("relocation avoids the host it stopped on", func(t *testing.T) {
		vm := &VM{Name: "x"}
		_, c := testRound(t, []*VM{vm}, Rules{}, nil)
		c.avoid["x"] = "h1"
		if got := rejectRelocation(c, vm, c.rooms["h1"]); got == "" {
			t.Error("h1 accepted for a VM relocated from it")
		}
	})
}

func TestScorers(t *testing.T) {
	tests := []struct {
		scorer string
		vm     *VM
		rules  Rules
		want   map[string]int64
	}{
		{"move-to", &VM{Name: "x", MoveTo: "h2"}, Rules{}, map[string]int64{"h1": 0, "h2": 1}},
		{"node-affinity", &VM{Name: "x"}, Rules{Nodes: []NodeAffinity{{Name: "p", VMs: []string{"x"}, Hosts: map[string]int{"h1": 0, "h2": 3}}}},
			map[string]int64{"h1": 1, "h2": 4}},
		{"node-affinity", &VM{Name: "x"}, Rules{Nodes: []NodeAffinity{{Name: "p", VMs: []string{"x"}, Hosts: map[string]int{"h2": 0}}}},
			map[string]int64{"h1": 0, "h2": 1}}, // listed at priority 0 still beats unlisted
		{"preferred", &VM{Name: "x", Preferred: []string{"h2", "h1"}}, Rules{}, map[string]int64{"h1": 1, "h2": 2}},
		{"spread", &VM{Name: "x"}, Rules{}, map[string]int64{"h1": 4096 * mib, "h2": 1024 * mib}},
	}
	for _, tt := range tests {
		t.Run(tt.scorer, func(t *testing.T) {
			_, c := testRound(t, []*VM{tt.vm}, tt.rules, nil)
			for _, sc := range Scorers {
				if sc.Name != tt.scorer {
					continue
				}
				for host, want := range tt.want {
					if got := sc.Score(c, tt.vm, c.rooms[host]); got != want {
						t.Errorf("%s on %s = %d, want %d", tt.scorer, host, got, want)
					}
				}
				return
			}
			t.Fatalf("no scorer %q", tt.scorer)
		})
	}
}

// Scorers rank in order: an operator's target beats node affinity, which
// beats preferred hosts, which beat spreading; a filter beats them all.
func TestPickOrder(t *testing.T) {
	rules := Rules{Nodes: []NodeAffinity{{Name: "p", VMs: []string{"x"}, Hosts: map[string]int{"h2": 1}}}}
	tests := []struct {
		name string
		vm   *VM
		want string
	}{
		{"spread", &VM{Name: "y", MemKiB: 512 * mib}, "h1"},
		{"preferred beats spread", &VM{Name: "y", MemKiB: 512 * mib, Preferred: []string{"h2"}}, "h2"},
		{"node affinity beats preferred", &VM{Name: "x", MemKiB: 512 * mib, Preferred: []string{"h1"}}, "h2"},
		{"move-to beats node affinity", &VM{Name: "x", MemKiB: 512 * mib, MoveTo: "h1"}, "h1"},
		{"capacity beats move-to", &VM{Name: "x", MemKiB: 2048 * mib, MoveTo: "h2"}, "h1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := testRound(t, []*VM{tt.vm}, rules, nil)
			r, why := c.pick(tt.vm)
			if r == nil || r.h.ID != tt.want {
				t.Fatalf("picked %v (%s), want %s", r, why, tt.want)
			}
		})
	}
}

// Place never over-commits, whatever the order of the VMs asked for.
func TestPlaceNeverOvercommits(t *testing.T) {
	s, _ := testRound(t, nil, Rules{}, nil)
	var want []string
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		s.VMs[n] = &VM{Name: n, Restart: RestartAlways, MemKiB: 1024 * mib, CPUs: 1}
		want = append(want, n)
	}
	p := Place(s, want, time.Time{})
	used := map[string]int64{}
	for _, a := range p.Assign {
		used[a.Host] += s.VMs[a.VM].MemKiB
	}
	for h, u := range used {
		if u > s.Hosts[h].MemKiB {
			t.Errorf("%s given %d KiB of %d", h, u, s.Hosts[h].MemKiB)
		}
	}
	if len(p.Assign) != 5 || len(p.Unplaced) != 1 {
		t.Errorf("assigned %v, unplaced %v; want 5 and 1 (h1 takes 4, h2 one)", p.Assign, p.Unplaced)
	}
}

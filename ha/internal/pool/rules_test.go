package pool

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestValidateRules(t *testing.T) {
	node := func(name string, strict bool, vms []string, hosts ...string) NodeAffinity {
		n := NodeAffinity{Name: name, VMs: vms, Hosts: map[string]int{}, Strict: strict}
		for i, h := range hosts {
			n.Hosts[h] = i
		}
		return n
	}
	res := func(name string, together bool, vms ...string) ResourceAffinity {
		return ResourceAffinity{Name: name, VMs: vms, Together: together}
	}
	tests := []struct {
		name  string
		rules Rules
		vms   map[string]*VM
		want  []string // the rules the error names; nil: accepted
	}{
		{name: "empty", rules: Rules{}},
		{name: "compatible",
			rules: Rules{Nodes: []NodeAffinity{node("n", true, []string{"a", "b"}, "h1", "h2")},
				Resources: []ResourceAffinity{res("t", true, "a", "b"), res("x", false, "a", "c")}}},
		{name: "unnamed", rules: Rules{Resources: []ResourceAffinity{res("", true, "a", "b")}}, want: []string{""}},
		{name: "same name twice", rules: Rules{Resources: []ResourceAffinity{res("r", true, "a", "b"), res("r", false, "c", "d")}}, want: []string{"r", "r"}},
		{name: "one VM", rules: Rules{Resources: []ResourceAffinity{res("r", true, "a")}}, want: []string{"r"}},
		{name: "no hosts", rules: Rules{Nodes: []NodeAffinity{node("n", false, []string{"a"})}}, want: []string{"n"}},
		{name: "negative priority", rules: Rules{Nodes: []NodeAffinity{{Name: "n", VMs: []string{"a"}, Hosts: map[string]int{"h1": -1}}}}, want: []string{"n"}},
		{name: "VM in two node rules",
			rules: Rules{Nodes: []NodeAffinity{node("n1", false, []string{"a"}, "h1"), node("n2", true, []string{"b", "a"}, "h2")}},
			want:  []string{"n1", "n2"}},
		{name: "together and apart",
			rules: Rules{Resources: []ResourceAffinity{res("t", true, "a", "b"), res("x", false, "b", "a")}},
			want:  []string{"t", "x"}},
		{name: "together through a third VM, then apart",
			rules: Rules{Resources: []ResourceAffinity{res("t1", true, "a", "b"), res("t2", true, "b", "c"), res("x", false, "a", "c")}},
			want:  []string{"t1", "t2", "x"}},
		{name: "group against rule",
			rules: Rules{Resources: []ResourceAffinity{res("t", true, "a", "b")}},
			vms:   map[string]*VM{"a": {Name: "a", AntiAffinity: "g"}, "b": {Name: "b", AntiAffinity: "g"}},
			want:  []string{"t", "anti-affinity group g"}},
		{name: "affinity group against apart rule",
			rules: Rules{Resources: []ResourceAffinity{res("x", false, "a", "b")}},
			vms:   map[string]*VM{"a": {Name: "a", Affinity: "g"}, "b": {Name: "b", Affinity: "g"}},
			want:  []string{"affinity group g", "x"}},
		{name: "together on disjoint strict rules",
			rules: Rules{Nodes: []NodeAffinity{node("na", true, []string{"a"}, "h1"), node("nb", true, []string{"b"}, "h2")},
				Resources: []ResourceAffinity{res("t", true, "a", "b")}},
			want: []string{"na", "nb"}},
		{name: "together on disjoint preferred rules is fine",
			rules: Rules{Nodes: []NodeAffinity{node("na", false, []string{"a"}, "h1"), node("nb", false, []string{"b"}, "h2")},
				Resources: []ResourceAffinity{res("t", true, "a", "b")}}},
		{name: "apart on too few strict hosts",
			rules: Rules{Nodes: []NodeAffinity{node("n", true, []string{"a", "b", "c"}, "h1", "h2")},
				Resources: []ResourceAffinity{res("x", false, "a", "b", "c")}},
			want: []string{"n", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRules(tt.rules, tt.vms)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RuleError naming %q", err, tt.want)
			}
			if !slices.Equal(re.Rules, tt.want) {
				t.Fatalf("error names %q, want %q: %v", re.Rules, tt.want, err)
			}
		})
	}
}

// What each kind of fence proof allows, and when: a verified power-off at
// once, a self-fence after ReassignAfter and Lease+WatchdogTimeout, an
// operator's word after ReassignAfter, an unverified result never.
func TestProofKinds(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm := defaultTimings() // Lease 1.5s, ReassignAfter 2s
	tm.WatchdogTimeout = 1500 * time.Millisecond
	tests := []struct {
		kind  ProofKind
		after time.Duration // silence when asked
		ok    bool
	}{
		{ProofVerifiedOff, 1100 * time.Millisecond, true},
		{ProofSelfFence, 2100 * time.Millisecond, false}, // past ReassignAfter, not past Lease+Watchdog (3s)
		{ProofSelfFence, 3100 * time.Millisecond, true},
		{ProofOperator, 1900 * time.Millisecond, false},
		{ProofOperator, 2100 * time.Millisecond, true},
		{ProofUnverified, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"+"+tt.after.String(), func(t *testing.T) {
			s := NewState(tm)
			s.LeaderSince = base.Add(-time.Minute)
			s.Hosts["h1"] = &Host{ID: "h1", State: HostSuspect, LastRenewal: base}
			s.Hosts["h2"] = &Host{ID: "h2", State: HostOnline, MemKiB: 4096 * mib, CPUs: 4, LastRenewal: base.Add(tt.after)}
			s.VMs["web"] = &VM{Name: "web", Restart: RestartAlways, Host: "h1"}
			_ = s.RecordProof(Proof{Host: "h1", Epoch: 0, Kind: tt.kind, At: base.Add(time.Second)})
			now := base.Add(tt.after)
			var started bool
			for _, a := range Plan(s, now) {
				if a.Kind == ActAssign && a.VM == "web" {
					started = true
					if err := s.Apply(a, now); err != nil {
						t.Fatalf("planned %v, refused: %v", a, err)
					}
				}
			}
			if started != tt.ok {
				t.Fatalf("web placed = %v after %v of silence with a %s proof, want %v", started, tt.after, tt.kind, tt.ok)
			}
			// The transition refuses what the plan may not do.
			if !tt.ok {
				if err := s.Apply(Action{Kind: ActAssign, VM: "web", Host: "h2"}, now); err == nil {
					t.Fatalf("assignment committed with a %s proof after %v", tt.kind, tt.after)
				}
			}
		})
	}
}

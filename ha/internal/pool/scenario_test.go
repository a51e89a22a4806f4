package pool

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestScenarios runs every transcript in testdata/scenarios against the
// model in a simulated pool. Run with -rewrite to rewrite the expected
// output; a changed rule then shows as a diff of the transcripts.
//
// Directives:
//
//	pool              build the pool from the input lines (host, vm, volume,
//	                  node-rule, together, apart, timings); prints rule errors
//	run for=D         advance the world by D, printing what the leader
//	                  planned (new actions only) and what the hosts did
//	plan              print Plan at this instant without carrying it out
//	state             print the pool, the truth, proofs and incidents
//	crash/hang/partition/heal/power-on host=H
//	fence-script host=H results=(ok|fail|timeout|unverified, ...)
//	vm-crash vm=V     the VM's guest dies on its host
//	maintenance host=H on|off
//	storage-lost host=H pool=P
//	clock-jump by=D   the leader stalls for D: nothing renews or acts
//	move vm=V to=H    an operator moves a VM
//	ack host=H        an operator powers H off and acknowledges it
//	                  (still-on: acknowledges it without powering it off)
//	leader-change     a new leader takes over now
//	migration-fails vm=V
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		var w *world
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "pool" && w == nil {
				d.Fatalf(t, "%s before pool", d.Cmd)
			}
			w2, out, err := scenarioStep(w, d)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			w = w2
			return out
		})
		if w != nil && len(w.violations) > 0 {
			t.Errorf("safety violations:\n%s", strings.Join(w.violations, "\n"))
		}
	})
}

func arg(d *datadriven.TestData, key string) string {
	if a, ok := d.Arg(key); ok && len(a.Vals) > 0 {
		return a.Vals[0]
	}
	return ""
}

func scenarioStep(w *world, d *datadriven.TestData) (*world, string, error) {
	host := func() (*simHost, error) {
		sh := w.hosts[arg(d, "host")]
		if sh == nil {
			return nil, fmt.Errorf("no host %q", arg(d, "host"))
		}
		return sh, nil
	}
	flush := func() string {
		out := strings.Join(w.out, "\n")
		w.out = nil
		if out == "" {
			return "(nothing)"
		}
		return out
	}
	switch d.Cmd {
	case "pool":
		nw, err := buildPool(d.Input)
		if err != nil {
			return nil, "", err
		}
		if err := ValidateRules(nw.s.Rules, nw.s.VMs); err != nil {
			return nw, err.Error(), nil
		}
		return nw, "ok", nil
	case "run":
		dur, err := time.ParseDuration(arg(d, "for"))
		if err != nil {
			return nil, "", fmt.Errorf("run for=: %w", err)
		}
		w.run(dur)
		return w, flush(), nil
	case "plan":
		var lines []string
		for _, a := range Plan(w.s, w.now) {
			lines = append(lines, a.Format(w.base))
		}
		if len(lines) == 0 {
			return w, "(nothing)", nil
		}
		return w, strings.Join(lines, "\n"), nil
	case "state":
		return w, w.describe(), nil
	case "crash", "hang", "partition", "heal", "power-on", "ack":
		sh, err := host()
		if err != nil {
			return nil, "", err
		}
		switch d.Cmd {
		case "crash":
			w.powerOff(sh, "crash")
		case "hang":
			sh.hung = true
		case "partition":
			w.partition(sh.id)
		case "heal":
			w.heal(sh.id)
		case "power-on":
			w.powerOn(sh.id)
		case "ack":
			if !d.HasArg("still-on") {
				w.powerOff(sh, "by the operator")
			}
			h := w.s.Hosts[sh.id]
			if err := w.s.RecordProof(Proof{Host: sh.id, Epoch: h.Epoch, Kind: ProofOperator, Method: "operator", At: w.now}); err != nil {
				w.logf("ack refused: %v", err)
			}
		}
		return w, flush(), nil
	case "fence-script":
		a, _ := d.Arg("results")
		w.fence[arg(d, "host")] = append([]string(nil), a.Vals...)
		return w, "ok", nil
	case "vm-crash":
		name := arg(d, "vm")
		for _, id := range sortedKeys(w.hosts) {
			if sh := w.hosts[id]; sh.running[name] {
				w.stopped(sh, name, true)
				sh.crashed[name] = true
				w.logf("%s crashes on %s", name, id)
			}
		}
		return w, flush(), nil
	case "maintenance":
		if err := w.s.SetMaintenance(arg(d, "host"), d.HasArg("on")); err != nil {
			return w, err.Error(), nil
		}
		return w, "ok", nil
	case "storage-lost":
		h := w.s.Hosts[arg(d, "host")]
		h.Lost = append(h.Lost, arg(d, "pool"))
		return w, "ok", nil
	case "clock-jump":
		dur, err := time.ParseDuration(arg(d, "by"))
		if err != nil {
			return nil, "", err
		}
		w.logf("the leader stalls for %v", dur)
		w.stalled = true
		w.run(dur)
		w.stalled = false
		return w, flush(), nil
	case "move":
		vm := w.s.VMs[arg(d, "vm")]
		vm.MoveTo = arg(d, "to")
		return w, "ok", nil
	case "leader-change":
		w.s.LeaderSince = w.now
		return w, "ok", nil
	case "migration-fails":
		w.migrateFails[arg(d, "vm")] = true
		return w, "ok", nil
	}
	return nil, "", fmt.Errorf("unknown directive %q", d.Cmd)
}

// buildPool reads a pool description, one item a line:
//
//	timings dead=1s initdead=3s lease=1.5s reassign=2s watchdog=1s escalate=3 retry=500ms
//	host h1 h2 mem=4096 cpus=8 tags=ssd,gpu live witness
//	volume d1 pool=san replicas=h1,h2
//	vm web mem=1024 cpus=1 restart=best-effort priority=1 order=2 delay=2s
//	    anti=G aff=G tags=ssd prefer=h1,h2 failback restarts=2 volumes=d1 on=h1 stopped
//	node-rule pin vms=a,b hosts=h1:2,h2:1 strict
//	together r1 vms=a,b
//	apart r2 vms=a,b
func buildPool(input string) (*world, error) {
	t := defaultTimings()
	lines := strings.Split(input, "\n")
	for _, line := range lines {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "timings" {
			if err := parseTimings(&t, f[1:]); err != nil {
				return nil, err
			}
		}
	}
	w := newWorld(t)
	var placeOn [][2]string
	for n, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "timings" {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: %q names nothing", n+1, line)
		}
		names, kv, flags := splitFields(f[1:])
		var err error
		switch f[0] {
		case "host":
			for _, id := range names {
				h := &Host{ID: id}
				if err = hostFields(h, kv, flags); err != nil {
					break
				}
				w.addHost(h)
			}
		case "volume":
			w.s.Volumes[names[0]] = &Volume{ID: names[0], Pool: kv["pool"], Replicas: list(kv["replicas"])}
		case "vm":
			vm := &VM{Name: names[0], Restart: RestartAlways, MemKiB: 512 * 1024, CPUs: 1}
			if err = vmFields(vm, kv, flags); err == nil {
				w.s.VMs[vm.Name] = vm
				if on := kv["on"]; on != "" {
					placeOn = append(placeOn, [2]string{vm.Name, on})
				}
			}
		case "node-rule":
			r := NodeAffinity{Name: names[0], VMs: list(kv["vms"]), Hosts: map[string]int{}, Strict: flags["strict"]}
			for _, hp := range list(kv["hosts"]) {
				id, prio, _ := strings.Cut(hp, ":")
				p := 0
				if prio != "" {
					if p, err = strconv.Atoi(prio); err != nil {
						break
					}
				}
				r.Hosts[id] = p
			}
			w.s.Rules.Nodes = append(w.s.Rules.Nodes, r)
		case "together", "apart":
			w.s.Rules.Resources = append(w.s.Rules.Resources, ResourceAffinity{Name: names[0], VMs: list(kv["vms"]), Together: f[0] == "together"})
		default:
			err = fmt.Errorf("unknown item %q", f[0])
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	for _, p := range placeOn {
		if w.hosts[p[1]] == nil {
			return nil, fmt.Errorf("vm %s on unknown host %s", p[0], p[1])
		}
		w.putOn(w.s.VMs[p[0]], p[1])
	}
	return w, nil
}

// knownFlags are the bare words of a pool line that are not names.
var knownFlags = map[string]bool{"live": true, "witness": true, "failback": true, "stopped": true, "strict": true}

func splitFields(f []string) (names []string, kv map[string]string, flags map[string]bool) {
	kv, flags = map[string]string{}, map[string]bool{}
	for _, x := range f {
		if k, v, ok := strings.Cut(x, "="); ok {
			kv[k] = v
		} else if knownFlags[x] {
			flags[x] = true
		} else {
			names = append(names, x)
		}
	}
	return names, kv, flags
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func parseTimings(t *Timings, f []string) error {
	_, kv, _ := splitFields(append([]string{"timings"}, f...))
	durs := map[string]*time.Duration{
		"dead": &t.DeadTime, "initdead": &t.InitDead, "lease": &t.Lease, "reassign": &t.ReassignAfter,
		"watchdog": &t.WatchdogTimeout, "retry": &t.FenceRetry.Initial, "retrymax": &t.FenceRetry.Max,
	}
	for k, v := range kv {
		if k == "escalate" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("timings escalate=%q: %w", v, err)
			}
			t.EscalateAfter = n
			continue
		}
		p := durs[k]
		if p == nil {
			return fmt.Errorf("timings: unknown key %q", k)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("timings %s=%q: %w", k, v, err)
		}
		*p = d
	}
	return nil
}

func atoi(kv map[string]string, key string, dst *int) error {
	if v, ok := kv[key]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", key, v, err)
		}
		*dst = n
	}
	return nil
}

func hostFields(h *Host, kv map[string]string, flags map[string]bool) error {
	var mem int
	if err := atoi(kv, "mem", &mem); err != nil {
		return err
	}
	h.MemKiB = int64(mem) * 1024
	if err := atoi(kv, "cpus", &h.CPUs); err != nil {
		return err
	}
	h.Tags = list(kv["tags"])
	h.Witness, h.LiveMigrate = flags["witness"], flags["live"]
	return nil
}

func vmFields(vm *VM, kv map[string]string, flags map[string]bool) error {
	var mem int
	for key, dst := range map[string]*int{"mem": &mem, "cpus": &vm.CPUs, "priority": &vm.Priority, "order": &vm.Order, "restarts": &vm.MaxLocalRestarts} {
		if err := atoi(kv, key, dst); err != nil {
			return err
		}
	}
	if mem > 0 {
		vm.MemKiB = int64(mem) * 1024
	}
	if r, ok := kv["restart"]; ok {
		vm.Restart = Restart(r)
	}
	if v, ok := kv["delay"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("delay=%q: %w", v, err)
		}
		vm.StartDelay = d
	}
	vm.AntiAffinity, vm.Affinity = kv["anti"], kv["aff"]
	vm.Tags, vm.Preferred, vm.Volumes = list(kv["tags"]), list(kv["prefer"]), list(kv["volumes"])
	vm.Failback, vm.Stopped = flags["failback"], flags["stopped"]
	return nil
}

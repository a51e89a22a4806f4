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
//	migration-slow vm=V steps=N  its next live migration lasts N steps
//	remove host=H     an operator removes H from the pool (it is not fenced)
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
	if d.Cmd == "pool" {
		nw, err := buildPool(d.Input)
		if err != nil {
			return nil, "", err
		}
		if err := ValidateRules(nw.s.Rules, nw.s.VMs); err != nil {
			return nw, err.Error(), nil
		}
		return nw, "ok", nil
	}
	if ev := hostEvents[d.Cmd]; ev != nil {
		sh := w.hosts[arg(d, "host")]
		if sh == nil {
			return nil, "", fmt.Errorf("%s: no host %q", d.Cmd, arg(d, "host"))
		}
		ev(w, sh, d.HasArg("still-on"))
		return w, w.flush(), nil
	}
	if dir := directives[d.Cmd]; dir != nil {
		out, err := dir(w, d)
		return w, out, err
	}
	return nil, "", fmt.Errorf("unknown directive %q", d.Cmd)
}

// hostEvents happen to one host; the flag is ack's still-on.
var hostEvents = map[string]func(w *world, sh *simHost, flag bool){
	"crash":     func(w *world, sh *simHost, _ bool) { w.powerOff(sh, "crash") },
	"hang":      func(w *world, sh *simHost, _ bool) { sh.hung = sh.power },
	"partition": func(w *world, sh *simHost, _ bool) { w.partition(sh.id) },
	"heal":      func(w *world, sh *simHost, _ bool) { w.heal(sh.id) },
	"power-on":  func(w *world, sh *simHost, _ bool) { w.powerOn(sh.id) },
	"ack":       func(w *world, sh *simHost, stillOn bool) { w.ack(sh, !stillOn) },
}

// directives are the other commands of a transcript.
var directives = map[string]func(w *world, d *datadriven.TestData) (string, error){
	"run": func(w *world, d *datadriven.TestData) (string, error) {
		dur, err := time.ParseDuration(arg(d, "for"))
		if err != nil {
			return "", fmt.Errorf("run for=: %w", err)
		}
		w.run(dur)
		return w.flush(), nil
	},
	"plan": func(w *world, _ *datadriven.TestData) (string, error) {
		var lines []string
		for _, a := range Plan(w.s, w.now) {
			lines = append(lines, a.Format(w.base))
		}
		return orNothing(strings.Join(lines, "\n")), nil
	},
	"state": func(w *world, _ *datadriven.TestData) (string, error) { return w.describe(), nil },
	"fence-script": func(w *world, d *datadriven.TestData) (string, error) {
		a, _ := d.Arg("results")
		w.fence[arg(d, "host")] = append([]string(nil), a.Vals...)
		return "ok", nil
	},
	"vm-crash": func(w *world, d *datadriven.TestData) (string, error) {
		w.vmCrash(arg(d, "vm"))
		return w.flush(), nil
	},
	"maintenance": func(w *world, d *datadriven.TestData) (string, error) {
		if err := w.s.SetMaintenance(arg(d, "host"), d.HasArg("on")); err != nil {
			return err.Error(), nil
		}
		return "ok", nil
	},
	"storage-lost": func(w *world, d *datadriven.TestData) (string, error) {
		h := w.s.Hosts[arg(d, "host")]
		if h == nil {
			return "", fmt.Errorf("storage-lost: no host %q", arg(d, "host"))
		}
		h.Lost = append(h.Lost, arg(d, "pool"))
		return "ok", nil
	},
	"clock-jump": func(w *world, d *datadriven.TestData) (string, error) {
		dur, err := time.ParseDuration(arg(d, "by"))
		if err != nil {
			return "", fmt.Errorf("clock-jump by=: %w", err)
		}
		w.stall(dur)
		return w.flush(), nil
	},
	"move": func(w *world, d *datadriven.TestData) (string, error) {
		vm := w.s.VMs[arg(d, "vm")]
		if vm == nil {
			return "", fmt.Errorf("move: no VM %q", arg(d, "vm"))
		}
		vm.MoveTo = arg(d, "to")
		return "ok", nil
	},
	"leader-change": func(w *world, _ *datadriven.TestData) (string, error) {
		w.s.LeaderSince = w.now
		return "ok", nil
	},
	"migration-fails": func(w *world, d *datadriven.TestData) (string, error) {
		w.migrateFails[arg(d, "vm")] = true
		return "ok", nil
	},
	"migration-slow": func(w *world, d *datadriven.TestData) (string, error) {
		n, err := strconv.Atoi(arg(d, "steps"))
		if err != nil {
			return "", fmt.Errorf("migration-slow steps=: %w", err)
		}
		w.migrateSteps[arg(d, "vm")] = n
		return "ok", nil
	},
	"remove": func(w *world, d *datadriven.TestData) (string, error) {
		if err := w.s.Leave(arg(d, "host")); err != nil {
			return err.Error(), nil
		}
		return "ok", nil
	},
}

func orNothing(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return s
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
	placeOn := map[string]string{}
	for n, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "timings" {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: %q names nothing", n+1, line)
		}
		if err := poolLine(w, f, placeOn); err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	for _, vm := range sortedKeys(placeOn) {
		if w.hosts[placeOn[vm]] == nil {
			return nil, fmt.Errorf("vm %s on unknown host %s", vm, placeOn[vm])
		}
		w.putOn(w.s.VMs[vm], placeOn[vm])
	}
	return w, nil
}

// poolLine adds one item of a pool description to w; VMs placed with on=
// are noted in placeOn.
func poolLine(w *world, f []string, placeOn map[string]string) error {
	names, kv, flags := splitFields(f[1:])
	switch f[0] {
	case "host":
		for _, id := range names {
			h := &Host{ID: id}
			if err := hostFields(h, kv, flags); err != nil {
				return err
			}
			w.addHost(h)
		}
	case "volume":
		w.s.Volumes[names[0]] = &Volume{ID: names[0], Pool: kv["pool"], Replicas: list(kv["replicas"])}
	case "vm":
		vm := &VM{Name: names[0], Restart: RestartAlways, MemKiB: 512 * 1024, CPUs: 1}
		if err := vmFields(vm, kv, flags); err != nil {
			return err
		}
		w.s.VMs[vm.Name] = vm
		if on := kv["on"]; on != "" {
			placeOn[vm.Name] = on
		}
	case "node-rule":
		r := NodeAffinity{Name: names[0], VMs: list(kv["vms"]), Hosts: map[string]int{}, Strict: flags["strict"]}
		for _, hp := range list(kv["hosts"]) {
			id, prio, _ := strings.Cut(hp, ":")
			p := 0
			if prio != "" {
				var err error
				if p, err = strconv.Atoi(prio); err != nil {
					return fmt.Errorf("node-rule %s hosts=: %w", names[0], err)
				}
			}
			r.Hosts[id] = p
		}
		w.s.Rules.Nodes = append(w.s.Rules.Nodes, r)
	case "together", "apart":
		w.s.Rules.Resources = append(w.s.Rules.Resources, ResourceAffinity{Name: names[0], VMs: list(kv["vms"]), Together: f[0] == "together"})
	default:
		return fmt.Errorf("unknown item %q", f[0])
	}
	return nil
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
	h.CPUs = 64 // a host the transcript gives no vCPUs has plenty
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

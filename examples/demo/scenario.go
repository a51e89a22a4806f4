package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// Options choose the demo's size and script.
type Options struct {
	Hosts int // simulated hosts (at least 3: quorum survives one failure)
	VMs   int // protected VMs
	// Victims are pulled, in order: "follower", "leader", or a host ID.
	Victims []string
	// Restore powers each victim back on after its VMs are back, so that
	// the pool keeps a majority for the next victim.
	Restore bool
	// NetNS puts each host's nftables guard in its own network namespace
	// (needs root); otherwise the hosts use netguardtest fakes.
	NetNS bool
	// Profile is the members' configuration before identity and plug-ins
	// are filled in; the zero value means ha.FastLAN().
	Profile ha.Config
	// Wait bounds each wait for the pool to settle.
	Wait time.Duration
	// View receives the live view; Terminal redraws a table instead of
	// logging lines.
	View     io.Writer
	Terminal bool
	Logger   *slog.Logger
}

// Run is the demo: form the pool, protect the VMs, pull the plugs, and
// summarise. The error is for a demo that could not run; a run in which a
// VM was lost or ran twice returns a Summary with OK false.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Hosts < 3 {
		return nil, fmt.Errorf("demo: -hosts %d: at least 3 hosts keep a majority when one fails", o.Hosts)
	}
	if o.VMs < 1 {
		return nil, fmt.Errorf("demo: -vms %d: protect at least one VM", o.VMs)
	}
	for _, v := range o.Victims {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "h"))
		ok := v == "follower" || v == "leader" || strings.HasPrefix(v, "h") && err == nil && n >= 1 && n <= o.Hosts
		if !ok {
			return nil, fmt.Errorf("demo: victim %q: use follower, leader or a host h1..h%d", v, o.Hosts)
		}
	}
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.View == nil {
		o.View = io.Discard
	}
	if o.Profile.KeepAlive == 0 {
		o.Profile = ha.FastLAN()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	sum := &Summary{Hosts: o.Hosts, VMs: o.VMs, Guard: "netguardtest fake (in memory)"}
	if o.NetNS {
		sum.Guard = "nftables, one network namespace per host"
	}
	p, err := newPool(ctx, o.Hosts, o.NetNS, o.Profile, o.Logger)
	if err != nil {
		return nil, err
	}
	defer p.close()

	v := newView(o.View, o.Terminal, p, start)
	w := newWatch(p)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go w.run(wctx)
	go v.run(wctx)

	vms := demoVMs(o.VMs, o.Hosts)
	m := p.live()
	for _, vm := range vms {
		for _, id := range vm.Spec.Volumes {
			p.store.Create(id)
			if err := m.PutVolume(ctx, ha.Volume{Volume: storage.Volume{ID: id, Kind: storageKind}}); err != nil {
				return nil, fmt.Errorf("demo: add volume %s: %w", id, err)
			}
		}
		if err := m.PutVM(ctx, vm); err != nil {
			return nil, fmt.Errorf("demo: protect VM %s: %w", vm.Name, err)
		}
	}
	v.note("protected %d VMs on %d hosts", len(vms), o.Hosts)
	if err := settle(ctx, p, w, vms, o.Wait); err != nil {
		return nil, fmt.Errorf("demo: VMs did not start: %w", err)
	}
	v.note("all %d VMs run once", len(vms))

	for _, victim := range o.Victims {
		inc, failure, err := pull(ctx, p, w, v, vms, victim, o)
		if err != nil {
			return nil, err
		}
		if failure != "" {
			sum.Failures = append(sum.Failures, failure)
			break
		}
		sum.Incidents = append(sum.Incidents, inc)
	}
	// A host powered back on can cost the others a moment (an election, a
	// lease renewal late, VMs isolated and restarted): judge the pool once
	// it has settled again.
	if len(sum.Failures) == 0 {
		if err := settle(ctx, p, w, vms, o.Wait); err != nil {
			sum.Failures = append(sum.Failures, fmt.Sprintf("at the end: %v", err))
		} else if err := networkOwners(ctx, p, w, vms, o.Wait); err != nil {
			sum.Failures = append(sum.Failures, fmt.Sprintf("at the end: %v", err))
		}
	}
	stopWatch()
	v.stop()

	sum.Placement = map[string]string{}
	final := w.snapshot(ctx)
	for _, vm := range vms {
		hosts := final[vm.Name]
		switch len(hosts) {
		case 0:
			if vm.Policy.Restart == ha.RestartAlways {
				sum.Lost = append(sum.Lost, vm.Name)
			}
		case 1:
			sum.Placement[vm.Name] = hosts[0]
		default:
			sum.Placement[vm.Name] = strings.Join(hosts, "+")
		}
	}
	sum.DoubleRuns = w.doubles()
	sum.Elapsed = MillisOf(time.Since(start))
	sum.OK = len(sum.Lost) == 0 && len(sum.DoubleRuns) == 0 && len(sum.Failures) == 0 &&
		len(sum.Incidents) == len(o.Victims)
	return sum, nil
}

// pull pulls the plug on victim once the pool is whole, waits until its VMs
// run elsewhere, and powers it back on if o.Restore says so. It returns the
// incident, or a failure of the script (the summary says it), or an error
// for a demo that cannot go on.
func pull(ctx context.Context, p *pool, w *watch, v *view, vms []ha.VM, victim string, o Options) (IncidentSummary, string, error) {
	h, role, err := pick(p, victim)
	if err != nil {
		return IncidentSummary{}, "", err
	}
	if p.live() == nil {
		return IncidentSummary{}, "", errors.New("demo: no member is up")
	}
	// The outage is counted from a whole pool: every VM executing once and
	// observed running there by the cluster, not merely started.
	if err := settle(ctx, p, w, vms, o.Wait); err != nil {
		return IncidentSummary{}, fmt.Sprintf("before pulling %s: %v", h.id, err), nil
	}
	onVictim, err := h.executing(ctx)
	if err != nil {
		return IncidentSummary{}, "", fmt.Errorf("demo: read what %s runs: %w", h.id, err)
	}
	v.note("pulling the plug on %s (%s)", h.id, role)
	pulled := time.Now()
	h.bmc.SetPower(false)
	back, err := movedAt(ctx, p, w, onVictim, h.id, o.Wait)
	if err == nil {
		err = settle(ctx, p, w, vms, o.Wait)
	}
	if err != nil {
		return IncidentSummary{}, fmt.Sprintf("after pulling %s: %v", h.id, err), nil
	}
	inc, err := closedIncident(ctx, p, h.id, pulled, o.Wait)
	if err != nil {
		return IncidentSummary{}, err.Error(), nil
	}
	v.note("%s's VMs run again %d ms after the plug was pulled", h.id, back.Sub(pulled).Milliseconds())
	if o.Restore {
		h.bmc.SetPower(true)
		if err := online(ctx, p, h.id, o.Wait); err != nil {
			return IncidentSummary{}, err.Error(), nil
		}
		v.note("%s powered on and rejoined", h.id)
	}
	return incidentSummary(inc, role, pulled, back), "", nil
}

// pick resolves a victim name to a host that is up.
func pick(p *pool, victim string) (*host, string, error) {
	leader := p.leader()
	switch victim {
	case "leader":
		if leader == nil {
			return nil, "", errors.New("demo: no leader to pull the plug on")
		}
		return leader, "leader", nil
	case "follower":
		// The follower running the most VMs makes the best show.
		var best *host
		bestN := -1
		for _, h := range p.hosts {
			if h == leader || !h.isUp() {
				continue
			}
			n, _ := h.executing(context.Background())
			if len(n) > bestN {
				best, bestN = h, len(n)
			}
		}
		if best == nil {
			return nil, "", errors.New("demo: no follower is up")
		}
		return best, "follower", nil
	}
	h := p.host(victim)
	if h == nil || !h.isUp() {
		return nil, "", fmt.Errorf("demo: victim %q: not a host that is up (hosts are h1..h%d)", victim, len(p.hosts))
	}
	role := "follower"
	if h == leader {
		role = "leader"
	}
	return h, role, nil
}

// settle waits until every VM that must run executes on exactly one host,
// the one the cluster assigned it to, and the cluster observed it running
// there.
func settle(ctx context.Context, p *pool, w *watch, vms []ha.VM, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last string
	for {
		last = ""
		exec := w.snapshot(ctx)
		m := p.live()
		var st *ha.State
		if m != nil {
			st, _ = m.State(ctx, ha.Stale)
		}
		for _, vm := range vms {
			hosts := exec[vm.Name]
			switch {
			case len(hosts) != 1:
				last = fmt.Sprintf("VM %s executes on %d hosts %v", vm.Name, len(hosts), hosts)
			case st == nil || st.VMs[vm.Name] == nil:
				last = "no state readable"
			case st.VMs[vm.Name].Host != hosts[0]:
				last = fmt.Sprintf("VM %s runs on %s but is assigned to %q", vm.Name, hosts[0], st.VMs[vm.Name].Host)
			case !observedRunning(st.VMs[vm.Name], hosts[0]):
				last = fmt.Sprintf("VM %s runs on %s but the cluster has not observed it running there", vm.Name, hosts[0])
			}
			if last != "" {
				break
			}
		}
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func observedRunning(vm *ha.VM, host string) bool {
	return vm != nil && vm.Observed.Host == host && vm.Observed.State == xenctl.StateRunning
}

// movedAt polls until every VM in moved executes on exactly one host other
// than from and the cluster observed it running there, and returns that
// moment: the end of the outage that began when from's plug was pulled.
func movedAt(ctx context.Context, p *pool, w *watch, moved []string, from string, wait time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		exec := w.snapshot(ctx)
		var st *ha.State
		if m := p.live(); m != nil {
			st, _ = m.State(ctx, ha.Stale)
		}
		problem := ""
		for _, vm := range moved {
			hosts := exec[vm]
			switch {
			case len(hosts) != 1 || hosts[0] == from:
				problem = fmt.Sprintf("VM %s executes on %v", vm, hosts)
			case st == nil || !observedRunning(st.VMs[vm], hosts[0]):
				problem = fmt.Sprintf("VM %s executes on %s, not yet observed running there", vm, hosts[0])
			}
			if problem != "" {
				break
			}
		}
		if problem == "" {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%w: %s", ctx.Err(), problem)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// networkOwners waits until each VM's MAC is allowed by exactly one host's
// guard, the one it executes on (a VM's traffic is unblocked on one host at
// most), reading the guards back.
func networkOwners(ctx context.Context, p *pool, w *watch, vms []ha.VM, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		problem := ""
		exec := w.snapshot(ctx)
		allowed := map[string][]string{} // MAC → hosts allowing it
		for _, h := range p.hosts {
			h.mu.Lock()
			g, up := h.guard, h.up
			h.mu.Unlock()
			if !up || g == nil {
				continue
			}
			cur, err := g.Current(ctx)
			if err != nil {
				problem = fmt.Sprintf("read the guard of %s: %v", h.id, err)
				break
			}
			for _, r := range cur.Rules {
				if ok, _ := cur.Allowed(r.VIF.MAC); ok {
					allowed[r.VIF.MAC.String()] = append(allowed[r.VIF.MAC.String()], h.id)
				}
			}
		}
		for _, vm := range vms {
			if problem != "" {
				break
			}
			hosts := allowed[vm.Spec.MACs[0]]
			if len(hosts) != 1 || len(exec[vm.Name]) != 1 || hosts[0] != exec[vm.Name][0] {
				problem = fmt.Sprintf("VM %s executes on %v and its MAC %s is allowed on %v", vm.Name, exec[vm.Name], vm.Spec.MACs[0], hosts)
			}
		}
		if problem == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("single network owner: %w: %s", ctx.Err(), problem)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// closedIncident waits for the closed incident of host opened after t.
func closedIncident(ctx context.Context, p *pool, id string, after time.Time, wait time.Duration) (ha.Incident, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if m := p.live(); m != nil {
			incs := m.Incidents()
			for i := len(incs) - 1; i >= 0; i-- {
				inc := incs[i]
				if inc.Host == id && !inc.Opened.Before(after) && !inc.Closed.IsZero() {
					return inc, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ha.Incident{}, fmt.Errorf("demo: no closed incident for %s: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// online waits until host id is online again in the replicated state.
func online(ctx context.Context, p *pool, id string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if m := p.live(); m != nil {
			if st, err := m.State(ctx, ha.Stale); err == nil {
				if h := st.Hosts[id]; h != nil && h.State == ha.HostOnline {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: %s did not come back online: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demoVMs are the protected VMs: two databases kept apart by anti-affinity
// and restarted first, web servers, and best-effort batch workers.
func demoVMs(n, hosts int) []ha.VM {
	var out []ha.VM
	dbs := min(2, hosts-1, n)
	for i := range n {
		var name string
		pol := ha.Policy{Restart: ha.RestartAlways, MaxLocalRestarts: 3}
		mem := uint64(1 << 20) // KiB
		switch {
		case i < dbs:
			name = fmt.Sprintf("db-%d", i+1)
			pol.Priority, pol.AntiAffinity = 100, "db"
			mem = 2 << 20
		case (i-dbs)%4 == 3:
			name = fmt.Sprintf("batch-%d", (i-dbs)/4+1)
			pol.Priority, pol.Restart = 10, ha.RestartBestEffort
		default:
			name = fmt.Sprintf("web-%d", i-dbs-(i-dbs)/4+1)
			pol.Priority = 50
		}
		pol.Order = i
		uuid := fmt.Sprintf("5e1f0000-0000-4000-8000-%012x", i+1)
		mac := fmt.Sprintf("02:58:48:00:%02x:%02x", i>>8&0xff, i&0xff)
		addr := fmt.Sprintf("198.18.%d.%d", 100+i/250, i%250+2)
		out = append(out, ha.VM{
			Name: name, UUID: uuid, Policy: pol,
			Spec: ha.VMSpec{
				DomainXML: domainXML(name, uuid, mem, 1, mac),
				MemoryKiB: mem, VCPUs: 1,
				MACs: []string{mac}, Addrs: []string{addr},
				Volumes: []string{"vol-" + name},
			},
		})
	}
	slices.SortFunc(out, func(a, b ha.VM) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// domainXML is a minimal definition for libvirt's test driver.
func domainXML(name, uuid string, memKiB uint64, vcpus int, mac string) string {
	return fmt.Sprintf(`<domain type='test'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='KiB'>%d</memory>
  <vcpu>%d</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <interface type='network'><mac address='%s'/><source network='default'/></interface>
  </devices>
</domain>
`, name, uuid, memKiB, vcpus, mac)
}

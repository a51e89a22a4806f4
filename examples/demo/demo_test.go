package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/internal/testenv"
)

// relaxed is FastLAN with room for a loaded CI machine (2 cores, -race,
// other packages' tests): a renewal late by a few hundred milliseconds must
// not get a live host fenced, which would turn the test into a lottery.
func relaxed() ha.Config {
	c := ha.FastLAN()
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	c.KeepAlive, c.WarnTime, c.DeadTime = 200*time.Millisecond, time.Second, 1500*time.Millisecond
	c.Lease, c.ReassignAfter, c.IsolationLead = 2500*time.Millisecond, 2700*time.Millisecond, 300*time.Millisecond
	return c
}

// TestDemo runs the demo's script with small numbers, a follower and then
// the leader pulled, and checks the summary `make demo` prints: every VM
// runs exactly once at the end, none ran twice at any sample, and each
// incident closed with every phase timed.
func TestDemo(t *testing.T) {
	netns, why := canNetNS()
	if !netns {
		// Without root the demo runs on the fake guard; CI runs as root and
		// so also covers the nftables guards.
		if testenv.InCI() {
			t.Fatalf("CI must run the demo with nftables guards: %s", why)
		}
		t.Logf("guard: fake (%s)", why)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var view bytes.Buffer
	sum, err := Run(ctx, Options{
		Hosts: 3, VMs: 5, Victims: []string{"follower", "leader"}, Restore: true,
		NetNS: netns, Profile: relaxed(), Wait: time.Minute, View: &view,
	})
	if err != nil {
		t.Fatalf("demo did not run: %v\nview:\n%s", err, view.String())
	}
	var text bytes.Buffer
	sum.WriteText(&text)
	t.Logf("summary:\n%s", text.String())
	if !sum.OK || len(sum.Lost) > 0 || len(sum.DoubleRuns) > 0 || len(sum.Failures) > 0 {
		t.Fatalf("demo not OK: lost %v, double runs %v, failures %v\nview:\n%s", sum.Lost, sum.DoubleRuns, sum.Failures, view.String())
	}
	if len(sum.Placement) != 5 {
		t.Errorf("placement lists %d VMs, want 5: %v", len(sum.Placement), sum.Placement)
	}
	for vm, h := range sum.Placement {
		if strings.Contains(h, "+") || !strings.HasPrefix(h, "h") {
			t.Errorf("VM %s placed on %q, want one host", vm, h)
		}
	}
	if len(sum.Incidents) != 2 {
		t.Fatalf("%d incidents, want 2 (follower, leader)", len(sum.Incidents))
	}
	if sum.Incidents[0].Role != "follower" || sum.Incidents[1].Role != "leader" {
		t.Errorf("incident roles %q, %q; want follower, leader", sum.Incidents[0].Role, sum.Incidents[1].Role)
	}
	want := []string{ha.PhaseDetect, ha.PhaseFence, ha.PhaseProof, ha.PhasePlace, ha.PhaseStorage, ha.PhaseStart}
	for _, inc := range sum.Incidents {
		for _, name := range want {
			p, ok := inc.phase(name)
			if !ok {
				t.Errorf("incident of %s lacks phase %s: %+v", inc.Host, name, inc.Phases)
			} else if p.Duration < 0 {
				t.Errorf("incident of %s: phase %s lasted %d ms", inc.Host, name, p.Duration)
			}
		}
		if !strings.HasPrefix(inc.Fence, "ipmi") {
			t.Errorf("incident of %s: fenced by %q, want the IPMI proof", inc.Host, inc.Fence)
		}
		if len(inc.VMs) == 0 || inc.Outage <= 0 {
			t.Errorf("incident of %s moved %v with outage %d ms", inc.Host, inc.VMs, inc.Outage)
		}
	}
	// Nothing fails back (no VM asks for it), so the last victim, though
	// powered on again, runs none of the VMs taken from it.
	last := sum.Incidents[len(sum.Incidents)-1]
	for _, vm := range last.VMs {
		if sum.Placement[vm] == last.Host {
			t.Errorf("VM %s of the last incident runs on %s, the host it was taken from", vm, last.Host)
		}
	}
	if !strings.Contains(text.String(), "timeline: detect") || !strings.Contains(text.String(), "every VM runs exactly once") {
		t.Errorf("text summary lacks the timeline or the verdict:\n%s", text.String())
	}
	if err := checkOutages(text.String()); err != nil {
		t.Error(err)
	}

	var js bytes.Buffer
	if err := sum.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON summary does not decode: %v", err)
	}
	if !reflect.DeepEqual(&back, sum) {
		t.Errorf("JSON round trip changed the summary:\n%+v\n%+v", back, *sum)
	}
}

func TestDemoRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Hosts: 2, VMs: 3},
		{Hosts: 3, VMs: 0},
		{Hosts: 3, VMs: 3, Victims: []string{"h4"}},
		{Hosts: 3, VMs: 3, Victims: []string{"boss"}},
	} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("Run(%+v) accepted", o)
		}
	}
}

func TestDemoVMs(t *testing.T) {
	vms := demoVMs(12, 3)
	names := map[string]bool{}
	macs := map[string]bool{}
	groups, best := 0, 0
	for _, vm := range vms {
		if names[vm.Name] || macs[vm.Spec.MACs[0]] {
			t.Fatalf("duplicate VM name or MAC: %s %s", vm.Name, vm.Spec.MACs[0])
		}
		names[vm.Name], macs[vm.Spec.MACs[0]] = true, true
		if vm.Policy.AntiAffinity != "" {
			groups++
		}
		if vm.Policy.Restart == ha.RestartBestEffort {
			best++
		}
	}
	if len(vms) != 12 || groups != 2 || best == 0 {
		t.Fatalf("demoVMs(12, 3): %d VMs, %d in the anti-affinity group, %d best-effort", len(vms), groups, best)
	}
}

// BenchmarkDemoFailover runs `make demo`'s script with FastLAN and reports
// what an operator would quote: how long a follower's and the leader's VMs
// were down after the plug was pulled, as the hypervisors saw it.
func BenchmarkDemoFailover(b *testing.B) {
	netns, _ := canNetNS()
	var follower, leader Millis
	for range b.N {
		sum, err := Run(b.Context(), Options{Hosts: 3, VMs: 12, Victims: []string{"follower", "leader"},
			Restore: true, NetNS: netns, Wait: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if !sum.OK || len(sum.Incidents) != 2 {
			var text bytes.Buffer
			sum.WriteText(&text)
			b.Fatalf("demo not OK:\n%s", text.String())
		}
		follower += sum.Incidents[0].Outage
		leader += sum.Incidents[1].Outage
	}
	b.ReportMetric(float64(follower)/float64(b.N), "ms/outage-follower")
	b.ReportMetric(float64(leader)/float64(b.N), "ms/outage-leader")
}

var (
	outageRE = regexp.MustCompile(`^incident: (\S+) .* outage (\d+) ms$`)
	phaseRE  = regexp.MustCompile(`\b(detect|fence|proof|place|start) (\d+) ms`)
)

// checkOutages reads a printed summary and fails each incident whose outage
// (from the pull) is shorter than the phases it prints after the pull:
// detect, fence, proof, place and start follow one another from the pull to
// the last VM observed running, so they cannot add up to more.
func checkOutages(text string) error {
	var errs []error
	lines := strings.Split(text, "\n")
	found := 0
	for i, line := range lines {
		m := outageRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		found++
		outage, _ := strconv.Atoi(m[2])
		if i+1 >= len(lines) || !strings.Contains(lines[i+1], "timeline:") {
			errs = append(errs, fmt.Errorf("incident of %s: no timeline after %q", m[1], line))
			continue
		}
		sum, seen := 0, map[string]bool{}
		for _, p := range phaseRE.FindAllStringSubmatch(lines[i+1], -1) {
			n, _ := strconv.Atoi(p[2])
			sum += n
			seen[p[1]] = true
		}
		if len(seen) != 5 {
			errs = append(errs, fmt.Errorf("incident of %s: timeline %q does not name detect, fence, proof, place and start", m[1], lines[i+1]))
		}
		if outage < sum {
			errs = append(errs, fmt.Errorf("incident of %s: printed outage %d ms is shorter than the %d ms its timeline reports: %q", m[1], outage, sum, lines[i+1]))
		}
	}
	if found == 0 {
		errs = append(errs, fmt.Errorf("no incident in the summary:\n%s", text))
	}
	return errors.Join(errs...)
}

// The check above catches the summary a demo run once printed: an outage
// counted from an observation made after the pull.
func TestCheckOutagesCatchesAShortOutage(t *testing.T) {
	bad := "incident: h2 (follower) pulled; 5 VMs moved; outage 10 ms\n" +
		"  timeline: detect 402 ms | fence 61 ms | proof 0 ms | place 1 ms | start 25 ms (storage 3 ms of it)\n"
	if err := checkOutages(bad); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Fatalf("checkOutages(%q) = %v, want it to say the outage is too short", bad, err)
	}
	good := strings.Replace(bad, "outage 10 ms", "outage 490 ms", 1)
	if err := checkOutages(good); err != nil {
		t.Fatalf("checkOutages(%q) = %v", good, err)
	}
	s := IncidentSummary{Host: "h2", Role: "follower", VMs: []string{"a"}, Outage: 489, Phases: []PhaseMillis{
		{ha.PhaseDetect, 402}, {ha.PhaseFence, 61}, {ha.PhaseProof, 0}, {ha.PhasePlace, 1}, {ha.PhaseStorage, 3}, {ha.PhaseStart, 25}}}
	var text strings.Builder
	(&Summary{Incidents: []IncidentSummary{s}}).WriteText(&text)
	if err := checkOutages(text.String()); err != nil {
		t.Fatalf("WriteText's output:\n%s\n%v", text.String(), err)
	}
}

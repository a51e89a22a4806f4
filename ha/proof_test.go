package ha_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/hatest"
)

// A fence that proves nothing about power (an unverified or self-fence
// proof) never lets a VM start elsewhere before its host's lease has run
// out, however fast the fencer answers. The invariant checker fails the test
// on any VM that starts within Lease of the host's last renewal on such a
// proof; the test checks the incident's own record of the wait besides.
func TestFailoverUnverifiedProofWaitsOutTheLease(t *testing.T) {
	t.Parallel()
	for _, kind := range []fence.ProofKind{fence.ProofUnverified, fence.ProofSelfFence} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			w := hatest.NewWorld(t, 3, hatest.FenceProof(kind))
			inv := w.CheckInvariants(t)
			l, victim := killFollowerWithVMs(t, w)
			inv.Stop()
			inc := incidentOf(t, w.State(), victim)
			reassign := w.Config(l).ReassignAfter
			var detect, place ha.Phase
			for _, p := range inc.Phases {
				switch p.Name {
				case ha.PhaseDetect:
					detect = p
				case ha.PhasePlace:
					place = p
				}
			}
			// Decided (the place phase's start) is the leader's clock, as is
			// the detect phase's start (its last renewal).
			if waited := place.Start.Sub(detect.Start); waited < reassign {
				t.Errorf("placed %v after the last renewal on a %s proof, want at least ReassignAfter %v:\n%s",
					waited, kind, reassign, inc.Timeline(true))
			}
			if !strings.Contains(inc.Timeline(false), "not a verified power-off") {
				t.Errorf("the timeline does not say why it waited:\n%s", inc.Timeline(false))
			}
		})
	}
}

// A verified power-off is recorded as such, and the incident says the VMs
// could move at once.
func TestFailoverVerifiedOffSkipsTheWait(t *testing.T) {
	t.Parallel()
	w := hatest.NewWorld(t, 3)
	w.CheckInvariants(t)
	_, victim := killFollowerWithVMs(t, w)
	s := w.State()
	if n := len(s.Fences); n == 0 || s.Fences[n-1].Proof != fence.ProofVerifiedOff.String() {
		t.Fatalf("fence records %+v, want the last one verified-off", s.Fences)
	}
	if tl := incidentOf(t, s, victim).Timeline(false); !strings.Contains(tl, "verified power-off: its VMs may be placed at once") {
		t.Errorf("timeline:\n%s", tl)
	}
}

// killFollowerWithVMs puts six VMs on w, kills a follower that runs some of
// them and waits until they all run elsewhere. It returns the leader's index
// and the victim.
func killFollowerWithVMs(t *testing.T, w *hatest.World) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.AddVMs(ctx, testVMs(6)...); err != nil {
		t.Fatal(err)
	}
	l, err := w.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := w.ID((l + 1) % 3)
	onVictim := w.VMsOn(victim)
	if len(onVictim) == 0 {
		t.Fatalf("no VM on %s to fail over:\n%s", victim, w.Describe())
	}
	w.Kill(w.Index(victim))
	for _, vm := range onVictim {
		if _, err := w.WaitRunning(ctx, vm, victim); err != nil {
			t.Fatal(err)
		}
	}
	return l, victim
}

// incidentOf returns the newest incident of host in s.
func incidentOf(t *testing.T, s *ha.State, host string) *ha.Incident {
	t.Helper()
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		if s.Incidents[i].Host == host {
			return s.Incidents[i]
		}
	}
	t.Fatalf("no incident for %s in %+v", host, s.Incidents)
	return nil
}

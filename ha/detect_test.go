package ha

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a monotonic clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var fastTimings = timings{
	WarnTime: 250 * time.Millisecond, DeadTime: 400 * time.Millisecond, InitDead: 1 * time.Second,
	Lease: 800 * time.Millisecond, ReassignAfter: 850 * time.Millisecond,
}

func TestDetectorSilenceThresholds(t *testing.T) {
	clk := newFakeClock()
	d := newDetector(fastTimings, clk.Now)
	d.becameLeader()
	clk.Advance(2 * time.Second) // past InitDead
	d.renewed("h1")
	steps := []struct {
		advance time.Duration
		renew   bool
		health  health
		reassig bool
	}{
		{0, false, healthOK, false},
		{250 * time.Millisecond, false, healthOK, false},
		{1 * time.Millisecond, false, healthWarn, false},
		{150 * time.Millisecond, false, healthDead, false},
		{450 * time.Millisecond, false, healthDead, true},
		{0, true, healthOK, false}, // a renewal brings it back at once
		{300 * time.Millisecond, false, healthWarn, false},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.renew {
			d.renewed("h1")
		}
		v := d.verdict("h1")
		if v.Health != s.health || v.Reassignable != s.reassig {
			t.Fatalf("step %d: verdict %+v, want health %v reassignable %v", i, v, s.health, s.reassig)
		}
	}
}

// A new leader never counts silence from before its election, even if its
// record of a host is old: its view of the log may have lagged. A host it
// has not heard from since the election gets InitDead to find the new
// leader; one it has heard from is judged by DeadTime.
func TestDetectorCountsFromElection(t *testing.T) {
	clk := newFakeClock()
	d := newDetector(fastTimings, clk.Now)
	clk.Advance(2 * time.Second)
	d.renewed("h1")
	d.renewed("h2")
	clk.Advance(5 * time.Second)
	if v := d.verdict("h1"); v.Health != healthOK || v.Silence != 0 {
		t.Fatalf("follower verdict %+v, want OK and no silence", v)
	}
	d.becameLeader()
	if v := d.verdict("h1"); v.Health != healthOK {
		t.Fatalf("just elected: %+v, want OK", v)
	}
	clk.Advance(100 * time.Millisecond)
	d.renewed("h2")
	clk.Advance(401 * time.Millisecond)
	if v := d.verdict("h2"); v.Health != healthDead {
		t.Fatalf("h2, heard after the election, silent 401ms: %+v, want dead", v)
	}
	if v := d.verdict("h1"); v.Health != healthWarn || v.Reassignable {
		t.Fatalf("h1, not heard since the election, 501ms: %+v, want a warning only (InitDead)", v)
	}
	clk.Advance(500 * time.Millisecond)
	if v := d.verdict("h1"); v.Health != healthDead || !v.Reassignable {
		t.Fatalf("h1 past InitDead: %+v, want dead and reassignable", v)
	}
	d.lostLeadership()
	if v := d.verdict("h1"); v.Health != healthOK {
		t.Fatalf("after losing leadership: %+v, want OK", v)
	}
}

func TestDetectorInitDeadForUnheardHosts(t *testing.T) {
	clk := newFakeClock()
	d := newDetector(fastTimings, clk.Now)
	d.becameLeader()
	clk.Advance(900 * time.Millisecond)
	if v := d.verdict("new"); v.Health != healthWarn {
		t.Fatalf("unheard host within InitDead: %+v, want warn only", v)
	}
	clk.Advance(200 * time.Millisecond)
	if v := d.verdict("new"); v.Health != healthDead {
		t.Fatalf("unheard host past InitDead: %+v, want dead", v)
	}
}

func TestDetectorLeaseExpiryNeedsWatchdog(t *testing.T) {
	clk := newFakeClock()
	tm := fastTimings
	d := newDetector(tm, clk.Now)
	d.becameLeader()
	clk.Advance(10 * time.Second)
	if v := d.verdict("h"); v.LeaseExpired {
		t.Fatalf("without a watchdog the lease never counts as a fence: %+v", v)
	}
	tm.WatchdogTimeout = 500 * time.Millisecond
	d = newDetector(tm, clk.Now)
	d.becameLeader()
	clk.Advance(1300 * time.Millisecond)
	if v := d.verdict("h"); v.LeaseExpired {
		t.Fatalf("at exactly Lease+Watchdog: %+v, want not yet expired", v)
	}
	clk.Advance(time.Millisecond)
	if v := d.verdicts([]string{"h"}); !v[0].LeaseExpired {
		t.Fatalf("past Lease+Watchdog: %+v, want expired", v[0])
	}
}

// After an election, a host that renewed before it keeps InitDead to find the
// new leader while it answers probes, and loses the grace once its probe
// failed and it has been silent for DeadTime since its last renewal: it died
// with the old leader. A host never heard from may be booting, and keeps the
// whole grace whatever probes say.
func TestDetectorFailedProbesEndTheGrace(t *testing.T) {
	tm := fastTimings
	tm.InitDead = 10 * time.Second
	clk := newFakeClock()
	d := newDetector(tm, clk.Now)
	clk.Advance(20 * time.Second)
	d.renewed("gone")
	d.renewed("quiet")
	clk.Advance(700 * time.Millisecond)
	d.renewed("dead")
	d.renewed("slow")
	clk.Advance(300 * time.Millisecond) // the old leader dies; an election follows
	d.becameLeader()
	start := clk.Now()
	d.probed("gone", start, false)
	if v := d.verdict("gone"); v.Health != healthDead || v.Reassignable {
		t.Fatalf("silent 1 s, then a failed probe: %+v, want dead at once, not reassignable", v)
	}
	d.probed("quiet", start, true)
	if v := d.verdict("quiet"); v.Health == healthDead {
		t.Fatalf("silent 1 s but answering: %+v, want the grace", v)
	}
	if v := d.verdict("dead"); !v.Probe {
		t.Fatalf("a host seen before the election: %+v, want probed", v)
	}
	if v := d.verdict("booting"); v.Probe {
		t.Fatalf("a host never seen: %+v, want no probe", v)
	}
	// A probe that started before this term counts for nothing.
	d.probed("dead", start.Add(-time.Millisecond), false)
	d.probed("dead", start, false)
	d.probed("slow", start, true)
	d.probed("booting", start, false)
	clk.Advance(99 * time.Millisecond)
	if v := d.verdict("dead"); v.Health == healthDead {
		t.Fatalf("unreachable, silent for less than DeadTime: %+v, want not dead yet", v)
	}
	clk.Advance(2 * time.Millisecond)
	d.probed("dead", clk.Now(), false) // a later failure keeps the run's start
	if v := d.verdict("dead"); v.Health != healthDead || v.Reassignable {
		t.Fatalf("unreachable, silent past DeadTime: %+v, want dead, not yet reassignable", v)
	}
	clk.Advance(300 * time.Millisecond)
	for _, h := range []string{"slow", "booting"} {
		if v := d.verdict(h); v.Health == healthDead {
			t.Fatalf("%s within InitDead: %+v, want not dead", h, v)
		}
	}
	clk.Advance(450 * time.Millisecond)
	if v := d.verdict("dead"); !v.Reassignable {
		t.Fatalf("silent past ReassignAfter since the election: %+v, want reassignable", v)
	}
	// An answer restores the grace; a renewal ends the probing.
	d.probed("dead", clk.Now(), true)
	if v := d.verdict("dead"); v.Health == healthDead {
		t.Fatalf("answered a probe: %+v, want the grace back", v)
	}
	d.renewed("slow")
	if v := d.verdict("slow"); v.Probe || v.Health != healthOK {
		t.Fatalf("renewed: %+v, want OK and no probe", v)
	}
	// A new term starts with a clean slate.
	d.probed("dead", clk.Now(), false)
	d.lostLeadership()
	d.becameLeader()
	clk.Advance(time.Second)
	if v := d.verdict("dead"); v.Health == healthDead {
		t.Fatalf("failures from the last term: %+v, want ignored", v)
	}
}

// A host that has been renewing late lately gets that much longer (at most
// DeadTime) before it is dead; and while this member's own renewals are
// late, its log is stalled, and nobody's silence counts for that long.
func TestDetectorAllowsForJitterAndLogStalls(t *testing.T) {
	tm := fastTimings
	tm.KeepAlive = 100 * time.Millisecond
	clk := newFakeClock()
	d := newDetector(tm, clk.Now)
	d.setSelf("me")
	d.becameLeader()
	clk.Advance(2 * time.Second) // past InitDead
	for range 5 {
		d.renewed("me")
		d.renewed("steady")
		d.renewed("late")
		clk.Advance(100 * time.Millisecond)
	}
	d.renewed("late")
	clk.Advance(350 * time.Millisecond) // one renewal 250 ms late
	d.renewed("late")
	d.renewed("me")
	d.renewed("steady")
	clk.Advance(401 * time.Millisecond)
	d.renewed("me")
	if v := d.verdict("steady"); v.Health != healthDead {
		t.Fatalf("a steady host silent past DeadTime: %+v, want dead", v)
	}
	if v := d.verdict("late"); v.Health == healthDead {
		t.Fatalf("a host 250 ms late lately, silent 401 ms: %+v, want not yet dead", v)
	}
	clk.Advance(250 * time.Millisecond)
	d.renewed("me")
	if v := d.verdict("late"); v.Health != healthDead {
		t.Fatalf("silent past DeadTime + its lateness: %+v, want dead", v)
	}

	// The log stalls: this member's own renewal is 300 ms late too.
	d.renewed("steady")
	clk.Advance(401 * time.Millisecond)
	if v := d.verdict("steady"); v.Health == healthDead {
		t.Fatalf("silent 401 ms while this member's own renewals are 301 ms late: %+v, want not dead", v)
	}
	d.renewed("me")
	if v := d.verdict("steady"); v.Health != healthDead {
		t.Fatalf("own renewals on time again: %+v, want dead", v)
	}
}

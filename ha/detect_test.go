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
		health  Health
		reassig bool
	}{
		{0, false, HealthOK, false},
		{250 * time.Millisecond, false, HealthOK, false},
		{1 * time.Millisecond, false, HealthWarn, false},
		{150 * time.Millisecond, false, HealthDead, false},
		{450 * time.Millisecond, false, HealthDead, true},
		{0, true, HealthOK, false}, // a renewal brings it back at once
		{300 * time.Millisecond, false, HealthWarn, false},
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
	if v := d.verdict("h1"); v.Health != HealthOK || v.Silence != 0 {
		t.Fatalf("follower verdict %+v, want OK and no silence", v)
	}
	d.becameLeader()
	if v := d.verdict("h1"); v.Health != HealthOK {
		t.Fatalf("just elected: %+v, want OK", v)
	}
	clk.Advance(100 * time.Millisecond)
	d.renewed("h2")
	clk.Advance(401 * time.Millisecond)
	if v := d.verdict("h2"); v.Health != HealthDead {
		t.Fatalf("h2, heard after the election, silent 401ms: %+v, want dead", v)
	}
	if v := d.verdict("h1"); v.Health != HealthWarn || v.Reassignable {
		t.Fatalf("h1, not heard since the election, 501ms: %+v, want a warning only (InitDead)", v)
	}
	clk.Advance(500 * time.Millisecond)
	if v := d.verdict("h1"); v.Health != HealthDead || !v.Reassignable {
		t.Fatalf("h1 past InitDead: %+v, want dead and reassignable", v)
	}
	d.lostLeadership()
	if v := d.verdict("h1"); v.Health != HealthOK {
		t.Fatalf("after losing leadership: %+v, want OK", v)
	}
}

func TestDetectorInitDeadForUnheardHosts(t *testing.T) {
	clk := newFakeClock()
	d := newDetector(fastTimings, clk.Now)
	d.becameLeader()
	clk.Advance(900 * time.Millisecond)
	if v := d.verdict("new"); v.Health != HealthWarn {
		t.Fatalf("unheard host within InitDead: %+v, want warn only", v)
	}
	clk.Advance(200 * time.Millisecond)
	if v := d.verdict("new"); v.Health != HealthDead {
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

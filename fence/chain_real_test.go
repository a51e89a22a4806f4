package fence_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/agent"
	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/sbd"
)

// These tests run the chain over the real methods: ipmi against ipmi_sim,
// fence agents as processes, and the SBD poison pill on a file with a
// watching victim.

var sbdTiming = sbd.Header{Slots: 4, Loop: 20 * time.Millisecond, Watchdog: 200 * time.Millisecond, MsgWait: 400 * time.Millisecond}

// deadBMC returns an ipmi fencer whose BMC for host-b has died.
func deadBMC(t testing.TB) *ipmi.Fencer {
	b := ipmisim.Start(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte(b.Password), 0o600)
	f, err := ipmi.New(map[string]ipmi.Target{"host-b": {Address: b.Addr, Port: b.Port, User: b.User, CipherSuites: []int{3}, PasswordFile: pw}},
		ipmi.WithExchangeTimeout(200*time.Millisecond), ipmi.WithRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	b.Stop()
	return f
}

// pillVictim creates an SBD file with a watching host-b; the returned flag
// turns true when host-b fences itself.
func pillVictim(t testing.TB) (string, *atomic.Bool) {
	dev := filepath.Join(t.TempDir(), "sbd.img")
	os.WriteFile(dev, nil, 0o600)
	d, err := sbd.Create(t.Context(), dev, sbdTiming, "host-a", "host-b")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	var down atomic.Bool
	read := make(chan struct{}, 1)
	w, _ := sbd.NewWatcher([]string{dev}, "host-b", func(sbd.Event) { down.Store(true) },
		sbd.OnRead(func(sbd.Slot) {
			select {
			case read <- struct{}{}:
			default:
			}
		}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-read
	return dev, &down
}

const hungAgentScript = `#!/bin/sh
sleep 1000 &
echo "$$ $!" > "$(dirname "$0")/pids"
cat > /dev/null
sleep 1000
`

// hungAgent returns an agent fencer whose agent hangs, and a function that
// reports whether any process of the agent's group is still alive.
func hungAgent(t *testing.T, agentTimeout time.Duration) (*agent.Fencer, func() bool) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fence_hang")
	os.WriteFile(path, []byte(hungAgentScript), 0o755)
	f, err := agent.New(map[string]agent.Target{"host-b": {Agent: path}}, agent.WithTimeout(agentTimeout))
	if err != nil {
		t.Fatal(err)
	}
	anyAlive := func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "pids"))
		if err != nil {
			return false // never started
		}
		var a, b int
		fmt.Sscan(string(data), &a, &b)
		return alive(a) || alive(b)
	}
	return f, anyAlive
}

func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func waitDead(t *testing.T, anyAlive func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for anyAlive() {
		if time.Now().After(deadline) {
			t.Fatal("the hung agent's process group outlived its level")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChainDeadBMCEscalatesToPoisonPill: the BMC is gone, the agent hangs
// past its level's timeout (and is killed, group and all), and the poison
// pill fences the host.
func TestChainDeadBMCEscalatesToPoisonPill(t *testing.T) {
	dev, down := pillVictim(t)
	pill, err := sbd.New("host-a", map[string][]string{"host-b": {dev}})
	if err != nil {
		t.Fatal(err)
	}
	hung, anyAlive := hungAgent(t, time.Hour) // only the level timeout stops it
	c := newChain(t, []fence.Level{
		{Method: "ipmi", Fencer: deadBMC(t), Timeout: 5 * time.Second},
		{Method: "agent", Fencer: hung, Timeout: 300 * time.Millisecond},
		{Method: "sbd", Fencer: pill, Timeout: 10 * time.Second},
	})
	p, attempts, err := c.FenceAttempts(t.Context(), "host-b")
	if err != nil {
		t.Fatal(err)
	}
	if p.Method != "sbd" || !down.Load() {
		t.Fatalf("proof %v, victim down=%v; want the pill to have fenced it", p, down.Load())
	}
	if len(attempts) != 3 || !errors.Is(attempts[0].Err, fence.ErrUnreachable) || !errors.Is(attempts[1].Err, context.DeadlineExceeded) {
		t.Fatalf("attempts = %v; want unreachable BMC, timed-out agent, pill", attempts)
	}
	waitDead(t, anyAlive)
}

// TestChainEveryLevelFails: no proof, and an error that lists each level's
// failure in words an operator can act on.
func TestChainEveryLevelFails(t *testing.T) {
	hung, anyAlive := hungAgent(t, 200*time.Millisecond) // the agent's own timeout
	pill, _ := sbd.New("host-a", map[string][]string{"host-b": {filepath.Join(t.TempDir(), "no-such-device")}})
	c := newChain(t, []fence.Level{
		{Method: "ipmi", Fencer: deadBMC(t), Timeout: 5 * time.Second},
		{Method: "agent", Fencer: hung, Timeout: 5 * time.Second},
		{Method: "sbd", Fencer: pill, Timeout: 5 * time.Second},
	})
	p, err := c.Fence(t.Context(), "host-b")
	if err == nil || p != (fence.Proof{}) {
		t.Fatalf("Fence = %v, %v; want no proof", p, err)
	}
	var ce *fence.ChainError
	if !errors.As(err, &ce) || len(ce.Attempts) != 3 {
		t.Fatalf("err = %v; want a ChainError with three attempts", err)
	}
	if !errors.Is(err, fence.ErrUnreachable) || !errors.Is(err, agent.ErrTimeout) {
		t.Fatalf("ChainError should unwrap to the BMC's silence and the agent's timeout: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"level 0 (ipmi)", "did not answer", "level 1 (agent)", "killed its process group", "level 2 (sbd)", "no-such-device", "do not recover"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	waitDead(t, anyAlive)
}

// BenchmarkChainDeadBMCToPill measures fencing when the BMC is dead: the
// time to give up on it plus the pill's msgwait (400 ms here).
func BenchmarkChainDeadBMCToPill(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		dev, down := pillVictim(b)
		pill, _ := sbd.New("host-a", map[string][]string{"host-b": {dev}})
		c := newChain(b, []fence.Level{
			{Method: "ipmi", Fencer: deadBMC(b), Timeout: 5 * time.Second},
			{Method: "sbd", Fencer: pill, Timeout: 10 * time.Second},
		})
		b.StartTimer()
		start := time.Now()
		if _, err := c.Fence(b.Context(), "host-b"); err != nil || !down.Load() {
			b.Fatalf("%v (victim down %v)", err, down.Load())
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/fence")
	b.ReportMetric(float64(sbdTiming.MsgWait.Milliseconds()), "ms/msgwait")
}

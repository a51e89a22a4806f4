package ipmi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/fence/ipmi"
	"github.com/xenha/xenha/fence/ipmi/ipmitest"
)

// fast keeps tests quick against loopback BMCs with quick polls, while
// leaving ipmi_sim (which forks its chassis hook for every power read) room
// to answer on a loaded machine.
var fast = []ipmi.Option{
	ipmi.WithExchangeTimeout(time.Second), ipmi.WithRetries(3),
	ipmi.WithPollInterval(20 * time.Millisecond), ipmi.WithVerifyTimeout(5 * time.Second),
}

func newFencer(t testing.TB, targets map[string]ipmi.Target, opts ...ipmi.Option) *ipmi.Fencer {
	t.Helper()
	f, err := ipmi.New(targets, append(append([]ipmi.Option(nil), fast...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startBMC runs an in-process BMC (ipmitest) until the test ends.
func startBMC(t testing.TB, opts ...ipmitest.Option) *ipmitest.BMC {
	t.Helper()
	b, err := ipmitest.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func writePassword(t testing.TB, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-password")
	if err := writeFile(p, pw+"\n"); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

func simTarget(t testing.TB, b *ipmisim.BMC, iface ipmi.Interface, suites ...int) ipmi.Target {
	return ipmi.Target{Address: b.Addr, Port: b.Port, User: b.User, Interface: iface,
		CipherSuites: suites, PasswordFile: writePassword(t, b.Password)}
}

// deadTarget is a BMC whose port refuses (nothing listens): unreachable at
// once, so the suite's unreachable clause costs no timeouts.
func deadTarget(t testing.TB) ipmi.Target {
	addr, port := ipmisim.ClosedEndpoint(t)
	return ipmi.Target{Address: addr, Port: port, User: "fence", PasswordFile: writePassword(t, "dead-bmc-Pa55")}
}

// TestConformanceIPMISim runs the contract against OpenIPMI's simulated BMC
// over IPMI 2.0 (cipher suite 3) and IPMI 1.5.
func TestConformanceIPMISim(t *testing.T) {
	for _, tc := range []struct {
		name   string
		iface  ipmi.Interface
		suites []int
	}{{"lanplus-cs3", ipmi.Lanplus, []int{3}}, {"lanplus-cs17-then-3", ipmi.Lanplus, []int{17, 3}}, {"lan", ipmi.Lan, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			fencetest.Run(t, func(t *testing.T) fencetest.Subject {
				b := ipmisim.Start(t)
				f := newFencer(t, map[string]ipmi.Target{
					"host-a": simTarget(t, b, tc.iface, tc.suites...),
					"dead":   deadTarget(t),
				})
				return fencetest.Subject{
					Fencer: f, Host: "host-a", Unreachable: "dead",
					IsOff: func(context.Context) (bool, error) {
						on, err := b.Powered()
						return !on, err
					},
				}
			})
		})
	}
}

// TestConformanceInProcessBMC runs the contract against go-ipmi's reference
// BMC, in process, over IPMI 2.0 and 1.5.
func TestConformanceInProcessBMC(t *testing.T) {
	for _, iface := range []ipmi.Interface{ipmi.Lanplus, ipmi.Lan} {
		t.Run(string(iface), func(t *testing.T) {
			fencetest.Run(t, func(t *testing.T) fencetest.Subject {
				g := startBMC(t)
				f := newFencer(t, map[string]ipmi.Target{
					"host-a": {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User, Interface: iface},
					"dead":   deadTarget(t),
				}, ipmi.WithPasswords(func(ctx context.Context, host string) (string, error) {
					return g.Password, nil
				}))
				return fencetest.Subject{
					Fencer: f, Host: "host-a", Unreachable: "dead",
					IsOff: func(context.Context) (bool, error) { return !g.On(), nil },
				}
			})
		})
	}
}

func TestWrongPasswordIsRejectedNotUnreachable(t *testing.T) {
	b := ipmisim.Start(t)
	g := startBMC(t)
	const wrong = "not-the-Pa55word"
	for name, target := range map[string]ipmi.Target{
		"ipmi_sim lanplus": {Address: b.Addr, Port: b.Port, User: b.User, CipherSuites: []int{3}, PasswordFile: writePassword(t, wrong)},
		"ipmi_sim lan":     {Address: b.Addr, Port: b.Port, User: b.User, Interface: ipmi.Lan, PasswordFile: writePassword(t, wrong)},
		"go bmc lanplus":   {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User, PasswordFile: writePassword(t, wrong)},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFencer(t, map[string]ipmi.Target{"host-a": target})
			p, err := f.Fence(t.Context(), "host-a")
			if err == nil || p != (fence.Proof{}) {
				t.Fatalf("Fence with a wrong password = %v, %v; want an error", p, err)
			}
			if !errors.Is(err, ipmi.ErrRejected) || errors.Is(err, fence.ErrUnreachable) {
				t.Fatalf("error %q: want ErrRejected, not ErrUnreachable", err)
			}
			var fe *fence.Error
			if !errors.As(err, &fe) || fe.Host != "host-a" || fe.Step != "connect" || fe.Method != "ipmi" {
				t.Fatalf("error %#v does not name host, method and step", err)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Fatalf("error leaks the password: %q", err)
			}
		})
	}
	if on, _ := b.Powered(); !on || !g.On() {
		t.Fatal("a rejected session changed the power")
	}
}

// TestOperatorUser: a fencing user limited to the operator privilege can
// fence when the target asks for operator.
func TestOperatorUser(t *testing.T) {
	b := ipmisim.Start(t)
	op := ipmi.Target{Address: b.Addr, Port: b.Port, User: ipmisim.OperatorUser, CipherSuites: []int{3},
		Privilege: "operator", PasswordFile: writePassword(t, ipmisim.OperatorPassword)}
	f := newFencer(t, map[string]ipmi.Target{"op": op})
	if _, err := f.Fence(t.Context(), "op"); err != nil {
		t.Fatalf("operator user at operator privilege: %v", err)
	}
	if on, _ := b.Powered(); on {
		t.Fatal("host still on after an operator fenced it")
	}
}

// TestSilentBMC: a BMC address where packets vanish (nothing answers, no
// ICMP refusal) is ErrUnreachable too.
func TestSilentBMC(t *testing.T) {
	addr, port := ipmisim.DeadEndpoint(t)
	f, err := ipmi.New(map[string]ipmi.Target{"host-a": {Address: addr, Port: port, User: "fence",
		PasswordFile: writePassword(t, "dead-bmc-Pa55")}}, ipmi.WithExchangeTimeout(200*time.Millisecond), ipmi.WithRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Fence(t.Context(), "host-a")
	if !errors.Is(err, fence.ErrUnreachable) || p != (fence.Proof{}) {
		t.Fatalf("Fence with a silent BMC = %v, %v; want ErrUnreachable", p, err)
	}
}

func TestUnreachableBMC(t *testing.T) {
	b := ipmisim.Start(t)
	f := newFencer(t, map[string]ipmi.Target{"host-a": simTarget(t, b, ipmi.Lanplus, 3)})
	b.Stop() // the BMC dies: its port is closed (ICMP refused) or silent
	p, err := f.Fence(t.Context(), "host-a")
	if !errors.Is(err, fence.ErrUnreachable) || p != (fence.Proof{}) {
		t.Fatalf("Fence with a dead BMC = %v, %v; want ErrUnreachable", p, err)
	}
	if !strings.Contains(err.Error(), "host-a") || !strings.Contains(err.Error(), b.Endpoint()) {
		t.Fatalf("error %q should name the host and the BMC address", err)
	}
}

// TestBMCThatNeverPowersOff: the BMC accepts power-down but the chassis
// stays on. That is ErrNotOff, never a proof.
func TestBMCThatNeverPowersOff(t *testing.T) {
	g := startBMC(t, ipmitest.WithPowerIgnored())
	f := newFencer(t, map[string]ipmi.Target{"host-a": {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User,
		PasswordFile: writePassword(t, g.Password)}}, ipmi.WithVerifyTimeout(300*time.Millisecond))
	p, err := f.Fence(t.Context(), "host-a")
	if !errors.Is(err, fence.ErrNotOff) || p != (fence.Proof{}) {
		t.Fatalf("Fence = %v, %v; want ErrNotOff", p, err)
	}
	var fe *fence.Error
	if !errors.As(err, &fe) || fe.Step != "verify off" {
		t.Fatalf("error %v should be at step 'verify off'", err)
	}
}

func TestCycleAndProofEvidence(t *testing.T) {
	b := ipmisim.Start(t)
	f := newFencer(t, map[string]ipmi.Target{"host-a": simTarget(t, b, ipmi.Lanplus, 3)})
	ctx := t.Context()
	p, err := f.Fence(ctx, "host-a")
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != fence.ProofVerifiedOff {
		t.Errorf("proof kind %v, want a verified power-off (the chassis status was read back)", p.Kind)
	}
	if !strings.Contains(p.Evidence, b.Endpoint()) || !strings.Contains(p.Evidence, "power off") || p.Method != "ipmi" {
		t.Fatalf("evidence %q should name the BMC and what it reported", p.Evidence)
	}
	if strings.Contains(p.String(), b.Password) {
		t.Fatal("proof leaks the password")
	}
	// Cycle on an off host powers it on.
	if err := f.Cycle(ctx, "host-a"); err != nil {
		t.Fatal(err)
	}
	if on, _ := b.Powered(); !on {
		t.Fatal("Cycle left an off host off")
	}
	if err := f.Cycle(ctx, "host-a"); err != nil {
		t.Fatal(err)
	}
	calls := strings.Join(b.HookCalls(), " ")
	if !strings.Contains(calls, "set_power_1") {
		t.Fatalf("hook calls %q show no power-on", calls)
	}
}

func TestPasswordFileRotation(t *testing.T) {
	g := startBMC(t)
	pwFile := writePassword(t, "old-Pa55")
	f := newFencer(t, map[string]ipmi.Target{"host-a": {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User, PasswordFile: pwFile}})
	if _, err := f.Status(t.Context(), "host-a"); !errors.Is(err, ipmi.ErrRejected) {
		t.Fatalf("old password: err = %v, want ErrRejected", err)
	}
	if err := writeFile(pwFile, g.Password+"\n"); err != nil {
		t.Fatal(err)
	}
	if p, err := f.Status(t.Context(), "host-a"); err != nil || p != fence.PowerOn {
		t.Fatalf("after rotating the password file: %v, %v", p, err)
	}
	missing := newFencer(t, map[string]ipmi.Target{"host-a": {Address: "127.0.0.1", Port: g.Port, User: ipmitest.User, PasswordFile: pwFile + ".gone"}})
	if _, err := missing.Fence(t.Context(), "host-a"); err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("missing password file: err = %v", err)
	}
}

func TestNewRejectsBadTargets(t *testing.T) {
	good := ipmi.Target{Address: "198.18.0.10", User: "u", PasswordFile: "/etc/xenha/bmc"}
	for name, mut := range map[string]func(*ipmi.Target){
		"no address":      func(t *ipmi.Target) { t.Address = "" },
		"bad port":        func(t *ipmi.Target) { t.Port = 70000 },
		"bad interface":   func(t *ipmi.Target) { t.Interface = "serial" },
		"bad suite":       func(t *ipmi.Target) { t.CipherSuites = []int{42} },
		"suite with lan":  func(t *ipmi.Target) { t.Interface = ipmi.Lan; t.CipherSuites = []int{3} },
		"no user":         func(t *ipmi.Target) { t.User = "" },
		"no password src": func(t *ipmi.Target) { t.PasswordFile = "" },
		"bad privilege":   func(t *ipmi.Target) { t.Privilege = "user" },
	} {
		tg := good
		mut(&tg)
		if _, err := ipmi.New(map[string]ipmi.Target{"h": tg}); err == nil || !strings.Contains(err.Error(), `"h"`) {
			t.Errorf("%s: New = %v; want an error naming the host", name, err)
		}
	}
	f, err := ipmi.New(map[string]ipmi.Target{"b": good, "a": good})
	if err != nil || strings.Join(f.Hosts(), ",") != "a,b" {
		t.Fatalf("New(good) = %v, hosts %v", err, f.Hosts())
	}
}

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/fence"
	"github.com/xenha/xenha/fence/agent"
	"github.com/xenha/xenha/fence/fencetest"
	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/internal/testenv"
)

func writeFile(t testing.TB, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func ipmilanTarget(t testing.TB, b *ipmisim.BMC) agent.Target {
	return agent.Target{
		Agent: "fence_ipmilan",
		Options: map[string]string{
			"ip": b.Addr, "ipport": strconv.Itoa(b.Port), "username": b.User,
			"lanplus": "1", "cipher": "3", "power_wait": "0",
		},
		PasswordFile: writeFile(t, t.TempDir(), "pw", b.Password+"\n", 0o600),
	}
}

// TestConformanceFenceIPMILan runs the real fence_ipmilan (and ipmitool)
// against OpenIPMI's simulated BMC.
func TestConformanceFenceIPMILan(t *testing.T) {
	testenv.NeedBinary(t, "fence_ipmilan")
	testenv.NeedBinary(t, "ipmitool")
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		b := ipmisim.Start(t)
		addr, port := ipmisim.DeadEndpoint(t)
		dead := agent.Target{Agent: "fence_ipmilan", Options: map[string]string{
			"ip": addr, "ipport": strconv.Itoa(port), "username": "x", "password": "y", "lanplus": "1", "cipher": "3", "ipmitool_timeout": "1"}}
		f, err := agent.New(map[string]agent.Target{"host-a": ipmilanTarget(t, b), "dead": dead},
			agent.WithTimeout(10*time.Second), agent.WithPollInterval(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return fencetest.Subject{
			Fencer: f, Host: "host-a", Unreachable: "dead", Timeout: 40 * time.Second,
			IsOff: func(context.Context) (bool, error) {
				on, err := b.Powered()
				return !on, err
			},
		}
	})
}

// scriptedAgent is a fence agent written by the test: it records its stdin
// and keeps the simulated host's power in a file.
const scriptedAgent = `#!/bin/sh
dir=$(dirname "$0")
input=$(cat)
printf '%s\n--\n' "$input" >> "$dir/stdin.log"
action=$(printf '%s\n' "$input" | sed -n 's/^action=//p')
mode=$(cat "$dir/mode" 2>/dev/null)
case $action in
off)
	[ "$mode" = fail-off ] && { echo "Failed: Unable to connect to fence device" >&2; exit 1; }
	[ "$mode" = timed-out ] && { echo "2026-11-23 13:00:00,000 ERROR: Connection timed out" >&2; exit 1; }
	[ "$mode" = ignore-off ] || echo off > "$dir/power"
	echo "Success: Powered OFF"; exit 0 ;;
on) echo on > "$dir/power"; echo "Success: Powered ON"; exit 0 ;;
status)
	[ "$mode" = weird-status ] && exit 7
	if [ "$(cat "$dir/power")" = off ]; then echo "Status: OFF"; exit 2; fi
	echo "Status: ON"; exit 0 ;;
esac
echo "unknown action $action" >&2
exit 1
`

type scripted struct {
	dir string
	f   *agent.Fencer
}

func newScripted(t *testing.T, opts ...agent.Option) *scripted {
	dir := t.TempDir()
	path := writeFile(t, dir, "fence_test", scriptedAgent, 0o755)
	writeFile(t, dir, "power", "on\n", 0o644)
	f, err := agent.New(map[string]agent.Target{"host-a": {
		Agent:        path,
		Options:      map[string]string{"ip": "198.18.0.9", "username": "admin"},
		PasswordFile: writeFile(t, dir, "pw", "s3cret-word\n", 0o600),
	}}, append([]agent.Option{agent.WithPollInterval(10 * time.Millisecond), agent.WithVerifyTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &scripted{dir: dir, f: f}
}

func (s *scripted) setMode(t *testing.T, mode string) { writeFile(t, s.dir, "mode", mode, 0o644) }

func (s *scripted) off() (bool, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, "power"))
	return strings.TrimSpace(string(data)) == "off", err
}

func TestConformanceScriptedAgent(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Subject {
		s := newScripted(t)
		return fencetest.Subject{Fencer: s.f, Host: "host-a",
			IsOff: func(context.Context) (bool, error) { return s.off() }}
	})
}

func TestStdinProtocol(t *testing.T) {
	s := newScripted(t)
	p, err := s.f.Fence(t.Context(), "host-a")
	if err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "stdin.log"))
	runs := strings.Split(strings.TrimSuffix(string(log), "--\n"), "--\n")
	if len(runs) != 2 {
		t.Fatalf("agent ran %d times, want off then status:\n%s", len(runs), log)
	}
	want0 := "ip=198.18.0.9\npassword=s3cret-word\nusername=admin\naction=off\n"
	if runs[0] != want0 || !strings.HasSuffix(runs[1], "action=status\n") {
		t.Fatalf("stdin = %q, %q; want %q then status", runs[0], runs[1], want0)
	}
	if p.Kind != fence.ProofVerifiedOff {
		t.Errorf("proof kind %v, want a verified power-off (status reported off)", p.Kind)
	}
	if !strings.Contains(p.Evidence, "Status: OFF") || p.Method != "agent:fence_test" {
		t.Fatalf("proof %v should quote the agent's status answer", p)
	}
}

func TestAgentFailures(t *testing.T) {
	for _, tc := range []struct {
		mode, step string
		want       error
	}{
		{"fail-off", "off", agent.ErrAgentFailed},
		{"timed-out", "off", fence.ErrUnreachable},
		{"ignore-off", "verify", fence.ErrNotOff},
		{"weird-status", "verify", agent.ErrAgentFailed},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := newScripted(t, agent.WithVerifyTimeout(100*time.Millisecond))
			s.setMode(t, tc.mode)
			p, err := s.f.Fence(t.Context(), "host-a")
			if !errors.Is(err, tc.want) || p != (fence.Proof{}) {
				t.Fatalf("Fence = %v, %v; want %v", p, err, tc.want)
			}
			var fe *fence.Error
			if !errors.As(err, &fe) || fe.Step != tc.step || fe.Host != "host-a" {
				t.Fatalf("error %v: want step %q on host-a", err, tc.step)
			}
			if strings.Contains(err.Error(), "s3cret-word") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	s := newScripted(t)
	s.setMode(t, "fail-off")
	_, err := s.f.Fence(t.Context(), "host-a")
	if !strings.Contains(err.Error(), "Unable to connect to fence device") {
		t.Fatalf("error %q should carry the agent's message", err)
	}
}

// hungAgent starts a helper (like ipmitool) and then hangs; both pids are
// written down so the test can check that the whole group died.
const hungAgent = `#!/bin/sh
sleep 1000 &
echo "$$ $!" > "$(dirname "$0")/pids"
cat > /dev/null
sleep 1000
`

func TestHungAgentGroupIsKilled(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "fence_hang", hungAgent, 0o755)
	f, err := agent.New(map[string]agent.Target{"host-a": {Agent: path}}, agent.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Fence(t.Context(), "host-a")
	if !errors.Is(err, agent.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || p != (fence.Proof{}) {
		t.Fatalf("Fence with a hung agent = %v, %v; want ErrTimeout", p, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	var agentPID, helperPID int
	if _, err := fmt.Sscan(string(data), &agentPID, &helperPID); err != nil {
		t.Fatalf("pids file %q: %v", data, err)
	}
	for _, pid := range []int{agentPID, helperPID} {
		// The helper was re-parented; give init a moment to reap it.
		deadline := time.Now().Add(10 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d of the hung agent's group still runs", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs (zombies count as dead).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, tg := range map[string]agent.Target{
		"unknown agent":     {Agent: "fence_no_such_agent_xenha"},
		"relative path":     {Agent: "bin/fence_x"},
		"no agent":          {},
		"action in options": {Agent: "/bin/true", Options: map[string]string{"action": "reboot"}},
		"newline in value":  {Agent: "/bin/true", Options: map[string]string{"ip": "1.2.3.4\naction=reboot"}},
		"bad key":           {Agent: "/bin/true", Options: map[string]string{"IP Address": "x"}},
		"password twice":    {Agent: "/bin/true", Options: map[string]string{"password": "x"}, PasswordFile: "/x"},
	} {
		if _, err := agent.New(map[string]agent.Target{"host-a": tg}); err == nil || !strings.Contains(err.Error(), `"host-a"`) {
			t.Errorf("%s: New = %v; want an error naming the host", name, err)
		}
	}
	_, err := agent.New(map[string]agent.Target{"h": {Agent: "fence_no_such_agent_xenha"}})
	if err == nil || !strings.Contains(err.Error(), "fence-agents") {
		t.Errorf("unknown agent error %v should say how to install agents", err)
	}
}

func TestValidateAgainstMetadata(t *testing.T) {
	testenv.NeedBinary(t, "fence_ipmilan")
	b := ipmisim.Start(t)
	good := ipmilanTarget(t, b)
	f, err := agent.New(map[string]agent.Target{"host-a": good})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(t.Context()); err != nil {
		t.Fatalf("Validate(good options) = %v", err)
	}
	bad := ipmilanTarget(t, b)
	bad.Options["lanplsu"] = "1"
	f, err = agent.New(map[string]agent.Target{"host-a": bad})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(t.Context()); err == nil || !strings.Contains(err.Error(), `no option "lanplsu"`) {
		t.Fatalf("Validate(misspelt option) = %v; want it named", err)
	}
}

func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0" ?><resource-agent name="fence_x"><parameters><parameter name="ip"/></parameters><actions><action name="off"/></actions></resource-agent>`))
	f.Add([]byte(`<resource-agent name=""></resource-agent>`))
	f.Add([]byte(`not xml`))
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := agent.ParseMetadata(data)
		if err == nil && (md.Name == "" || len(md.Parameters) == 0) {
			t.Fatalf("accepted metadata without name or parameters: %+v", md)
		}
	})
}

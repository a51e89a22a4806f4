package ipmisim_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/fence/internal/ipmisim"
	"github.com/xenha/xenha/internal/testenv"
)

// TestSimulatorPowerHook drives the simulator with ipmitool and checks that
// the chassis hook records the power change.
func TestSimulatorPowerHook(t *testing.T) {
	tool := testenv.NeedBinary(t, "ipmitool")
	b := ipmisim.Start(t)
	run := func(args ...string) string {
		base := []string{"-I", "lanplus", "-C", "3", "-H", b.Addr, "-p", strconv.Itoa(b.Port), "-U", b.User, "-P", b.Password}
		out, err := exec.Command(tool, append(base, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("chassis", "power", "status"); !strings.Contains(out, "is on") {
		t.Fatalf("status: %s", out)
	}
	run("chassis", "power", "off")
	if on, err := b.Powered(); err != nil || on {
		t.Fatalf("after power off: powered=%v err=%v; hook calls %v", on, err, b.HookCalls())
	}
	b.Stop()
	if err := ipmisim.Ping(b.Endpoint(), 100*time.Millisecond); err == nil {
		t.Fatal("stopped simulator still answers")
	}
}

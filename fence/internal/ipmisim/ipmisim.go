// Package ipmisim runs OpenIPMI's ipmi_sim, a simulated BMC, for tests: one
// BMC per call on a free loopback UDP port, with a chassis-control hook that
// keeps the simulated host's power in a file the test can read and set. The
// fence/ipmi and fence/agent tests share it.
package ipmisim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
)

// Default credentials of the simulated BMC's administrator, and of a user
// limited to the operator privilege.
const (
	User             = "xenha"
	Password         = "fence-me-Pa55"
	OperatorUser     = "xenha-op"
	OperatorPassword = "op-Pa55word"
)

// BMC is one running ipmi_sim.
type BMC struct {
	Addr     string // "127.0.0.1"
	Port     int
	User     string
	Password string

	dir   string
	power string // file holding "1" (on) or "0" (off)
	calls string // the hook's log
	cmd   *exec.Cmd
	done  chan struct{}
	out   *bytes.Buffer
}

// lanConf is ipmi_sim's configuration: one LAN channel on loopback that
// accepts IPMI 1.5 and 2.0 (RMCP+) sessions, an admin user, and the chassis
// hook. The hook path is quoted, so the directory must not contain quotes.
const lanConf = `name "xenha-%[1]d"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %[1]d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator md2 md5 straight
    allowed_auths_admin md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%[2]s 0x20"
  user 2 true "%[3]s" "%[4]s" admin 10 md2 md5 straight
  user 3 true "%[5]s" "%[6]s" operator 10 md2 md5 straight
`

// emuCmd creates the BMC (with chassis support, device support bits 0x9f).
const emuCmd = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`

// hookScript is called by ipmi_sim as "<hook> 0x20 get power" or
// "<hook> 0x20 set power 0|1"; the power state lives in a file.
const hookScript = `#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
shift
op=$1; shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) printf 'power:%s\n' "$(cat "$dir/power")" ;;
		boot) echo "boot:none" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		case $1 in
		power) echo "$2" > "$dir/power.tmp" && mv "$dir/power.tmp" "$dir/power" ;;
		esac
		shift 2
	done ;;
esac
exit 0
`

// Start runs a simulated BMC whose host is powered on, and stops it when the
// test ends. It skips (fails in CI) when ipmi_sim is not installed.
func Start(t testing.TB) *BMC {
	t.Helper()
	bin := testenv.NeedBinary(t, "ipmi_sim")
	var lastErr error
	for try := 0; try < 5; try++ {
		b, err := start(t, bin)
		if err == nil {
			return b
		}
		lastErr = err
	}
	t.Fatalf("ipmisim: could not start ipmi_sim: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*BMC, error) {
	// Another process may take the port before ipmi_sim binds it; Start
	// retries on a new port then.
	port := testenv.FreeUDPPort(t)
	// A short path of our own: ipmi_sim and the hook dislike spaces and quotes
	// that test names may bring into t.TempDir.
	dir, err := os.MkdirTemp("", "xenha-ipmisim-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &BMC{Addr: "127.0.0.1", Port: port, User: User, Password: Password, dir: dir,
		power: filepath.Join(dir, "power"), calls: filepath.Join(dir, "calls"),
		done: make(chan struct{}), out: &bytes.Buffer{}}
	hook := filepath.Join(dir, "chassis")
	files := map[string]string{
		"lan.conf": fmt.Sprintf(lanConf, port, hook, User, Password, OperatorUser, OperatorPassword),
		"emu.cmd":  emuCmd,
		"chassis":  hookScript,
		"power":    "1\n",
	}
	for name, body := range files {
		mode := os.FileMode(0o600)
		if name == "chassis" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, err
	}
	b.cmd = exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "emu.cmd"),
		"-s", filepath.Join(dir, "state"), "-n")
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.Stop)
	if err := b.waitReady(10 * time.Second); err != nil {
		b.Stop()
		return nil, fmt.Errorf("port %d: %w; output: %s", port, err, b.out.String())
	}
	return b, nil
}

// Stop kills the simulator (and any hook it runs). The BMC then stops
// answering, which is how tests make a BMC go silent.
func (b *BMC) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

// Powered reports the simulated host's power as the hook last set it.
func (b *BMC) Powered() (bool, error) {
	data, err := os.ReadFile(b.power)
	if err != nil {
		return false, err
	}
	switch strings.TrimSpace(string(data)) {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("ipmisim: power file holds %q", data)
}

// SetPowered sets the simulated host's power behind the BMC's back.
func (b *BMC) SetPowered(on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	return os.WriteFile(b.power, []byte(v), 0o600)
}

// HookCalls returns the chassis hook's invocations, e.g. "0x20 set power 0".
func (b *BMC) HookCalls() []string {
	data, _ := os.ReadFile(b.calls)
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "_"))
}

// Endpoint is "127.0.0.1:port".
func (b *BMC) Endpoint() string { return net.JoinHostPort(b.Addr, strconv.Itoa(b.Port)) }

// waitReady sends RMCP presence pings until the simulator answers.
func (b *BMC) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case <-b.done:
			return errors.New("ipmi_sim exited during start-up")
		default:
		}
		if Ping(b.Endpoint(), 200*time.Millisecond) == nil {
			return nil
		}
	}
	return fmt.Errorf("ipmi_sim did not answer an RMCP ping within %s", limit)
}

// Ping sends one RMCP/ASF presence ping and waits for the pong.
func Ping(endpoint string, wait time.Duration) error {
	conn, err := net.Dial("udp", endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	// RMCP header (version 6, seq 0xff, class ASF) + ASF presence ping.
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	if _, err := conn.Write(ping); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if n < 9 || buf[8] != 0x40 {
		return fmt.Errorf("unexpected RMCP reply % x", buf[:n])
	}
	return nil
}

// DeadEndpoint returns a loopback UDP port where nothing answers (bound and
// never read), for unreachable-BMC tests. It is closed when the test ends.
func DeadEndpoint(t testing.TB) (string, int) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return "127.0.0.1", c.LocalAddr().(*net.UDPAddr).Port
}

// ClosedEndpoint returns a loopback UDP port with nothing bound to it, so
// requests are refused at once (ICMP port unreachable): a dead BMC that
// costs a test no timeouts. Another process could bind the port meanwhile;
// that is unlikely enough for tests.
func ClosedEndpoint(t testing.TB) (string, int) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return "127.0.0.1", port
}

package libvirt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenha/xenha/internal/testenv"
	"github.com/xenha/xenha/xenctl/libvirt"
)

// A qemuHost is a real libvirtd with the qemu driver, private to one test: it
// runs in its own mount and UTS namespaces with a configuration the test
// writes, its own socket directory and host UUID, so that two of them on one
// machine look like two hosts (libvirt refuses to migrate between daemons
// with the same host UUID). libvirtd runs in a loop under "tini -s", a
// subreaper that reaps the QEMU processes libvirtd daemonizes; killing
// libvirtd restarts it in the same namespace, as a host's init would.
type qemuHost struct {
	name   string
	dir    string
	uri    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the namespace's first process ends
}

// runScript sets up the namespace and keeps libvirtd running until the stop
// file appears. A privileged libvirtd takes its configuration from the fixed
// /etc/libvirt and its state from /run, /var/lib, /var/cache and /var/log,
// and its qemu driver resolves the built-in QEMU user (libvirt-qemu on
// Debian) before it reads qemu.conf: on a machine without libvirt's system
// package neither that directory nor that user exists. So the namespace gets
// its own /etc and /var, each an overlay whose upper layer is a tmpfs of the
// namespace, and its own /run: the test's configuration and user database
// replace the machine's, the machine's libvirt state is hidden, and nothing
// the daemon writes reaches the machine.
const runScript = `set -e
D=$1
mount -t tmpfs tmpfs "$D/ns"
for d in etc var; do
	mkdir -p "$D/ns/$d/upper" "$D/ns/$d/work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$D/ns/$d/upper,workdir=$D/ns/$d/work" "/$d"
done
mount -t tmpfs tmpfs /run
rm -rf /etc/libvirt /etc/qemu /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind "$D/etc" /etc/libvirt
for f in passwd group nsswitch.conf hosts; do
	cp "$D/users/$f" "/etc/$f"
done
hostname "$2"
while [ ! -e "$D/stop" ]; do
	/usr/sbin/libvirtd -f "$D/etc/libvirtd.conf" -p "$D/libvirtd.pid" >>"$D/libvirtd.out" 2>&1 || true
	sleep 0.1
done
`

// needQEMUHosts skips (fails in CI) unless the machine can run qemuHosts.
func needQEMUHosts(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	for _, b := range []string{"unshare", "tini", "qemu-system-x86_64", "mount"} {
		testenv.NeedBinary(t, b)
	}
	testenv.NeedPackageFile(t, "/usr/sbin/libvirtd", "libvirt-daemon")
	testenv.NeedPackageFile(t, "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so", "libvirt-daemon-driver-qemu")
}

// qemuHostFiles is the whole configuration of a qemuHost's namespace, by
// path under its directory: libvirtd.conf and qemu.conf (in etc/, mounted
// as /etc/libvirt), and the user database (in users/, copied into /etc).
func qemuHostFiles(dir, name string, n int) map[string]string {
	sock := filepath.Join(dir, "sock")
	return map[string]string{
		"etc/libvirtd.conf": fmt.Sprintf(`unix_sock_dir = %q
host_uuid = "00000000-0000-4000-8000-%012d"
auth_unix_rw = "none"
auth_unix_ro = "none"
listen_tcp = 0
listen_tls = 0
log_outputs = "3:file:%s/libvirtd.log"
`, sock, n, dir),
		// No cgroups, no per-VM mount namespaces, no security driver:
		// the daemon runs as root inside a test's namespace, not on a
		// real host. QEMU runs as root too; stdio to files, not virtlogd.
		"etc/qemu.conf": `cgroup_controllers = [ ]
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
namespaces = [ ]
stdio_handler = "file"
`,
		// The qemu driver looks its built-in user up (libvirt-qemu on
		// Debian and Ubuntu, qemu on Fedora) even when qemu.conf names
		// another; these users only have to exist.
		"users/passwd": `root:x:0:0:root:/root:/bin/sh
libvirt-qemu:x:64055:64055:libvirt's built-in QEMU user:/nonexistent:/usr/sbin/nologin
qemu:x:107:107:libvirt's built-in QEMU user:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`,
		"users/group": `root:x:0:
kvm:x:104:
libvirt-qemu:x:64055:
qemu:x:107:
nogroup:x:65534:
`,
		"users/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
		"users/hosts":         fmt.Sprintf("127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost\n", name),
		"run.sh":              runScript,
	}
}

// startQEMUHost starts a daemon and waits until it answers.
func startQEMUHost(t testing.TB, name string, n int) *qemuHost {
	t.Helper()
	dir, err := os.MkdirTemp("", "xenha-lv-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	h := &qemuHost{name: name, dir: dir, exited: make(chan struct{})}
	sock := filepath.Join(dir, "sock")
	h.uri = "qemu+unix:///system?socket=" + filepath.Join(sock, "libvirt-sock")
	for _, d := range []string{"sock", "ns", "etc", "users"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, body := range qemuHostFiles(dir, name, n) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.cmd = exec.Command("unshare", "--mount", "--uts", "--propagation", "private",
		"tini", "-s", "--", "sh", filepath.Join(dir, "run.sh"), dir, name)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "unshare.out"))
	if err != nil {
		t.Fatal(err)
	}
	h.cmd.Stdout, h.cmd.Stderr = out, out
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("starting libvirtd for %s: %v", name, err)
	}
	out.Close()
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() { h.stop(t) })
	h.waitReady(t)
	return h
}

// waitReady waits until the daemon accepts a connection and lists domains.
func (h *qemuHost) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hv, err := libvirt.Open(ctx, h.uri)
		if err == nil {
			_, err = hv.Domains(ctx)
			hv.Close()
		}
		cancel()
		if err == nil {
			return
		}
		select {
		case <-h.exited:
			t.Fatalf("the namespace of libvirtd for %s ended at start-up: %v\n%s", h.name, err, h.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd for %s did not answer within 60 s: %v\n%s", h.name, err, h.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *qemuHost) logs() string {
	var b strings.Builder
	for _, f := range []string{"unshare.out", "libvirtd.out", "libvirtd.log"} {
		data, _ := os.ReadFile(filepath.Join(h.dir, f))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", f, data)
	}
	return b.String()
}

// libvirtdPID returns the running libvirtd's pid.
func (h *qemuHost) libvirtdPID(t testing.TB) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.dir, "libvirtd.pid"))
	if err != nil {
		t.Fatalf("libvirtd pid of %s: %v", h.name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("libvirtd pid of %s: %v", h.name, err)
	}
	return pid
}

// restartLibvirtd kills libvirtd (not its guests); the loop starts a new one.
func (h *qemuHost) restartLibvirtd(t testing.TB) {
	t.Helper()
	pid := h.libvirtdPID(t)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("killing libvirtd %d of %s: %v", pid, h.name, err)
	}
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends libvirtd, every QEMU it left behind, and the namespace.
func (h *qemuHost) stop(t testing.TB) {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = os.WriteFile(filepath.Join(h.dir, "stop"), nil, 0o644)
	if data, err := os.ReadFile(filepath.Join(h.dir, "libvirtd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	// QEMU processes are tini's children once libvirtd daemonized them.
	tini := childrenOf(h.cmd.Process.Pid)
	for _, p := range tini {
		for _, q := range childrenOf(p) {
			_ = syscall.Kill(q, syscall.SIGKILL)
		}
	}
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.exited
	}
	if !t.Failed() {
		os.RemoveAll(h.dir)
	} else {
		t.Logf("kept %s for inspection", h.dir)
	}
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces; fields resume after ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// guestKernel builds a diskless guest: a multiboot image (a.out kludge, so no
// ELF) that QEMU loads into RAM with -kernel and that writes a line to the
// first serial port about five times a second, forever. It has no disk, so it
// migrates without VIR_MIGRATE_UNSAFE, and no ACPI, so it ignores shutdown
// requests like a hung guest.
func guestKernel() []byte {
	const base = 0x100000
	var magic, flags uint32 = 0x1BADB002, 0x00010000
	hdr := []uint32{magic, flags, -(magic + flags), base, base, 0, 0, base + 32}
	var b bytes.Buffer
	for _, v := range hdr {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	const codeLen = 0x1D
	msg := uint32(base + 32 + codeLen)
	code := []byte{0xBE, 0, 0, 0, 0, // mov esi, msg
		0xBA, 0xF8, 0x03, 0x00, 0x00, // mov edx, 0x3f8 (COM1)
		0x8A, 0x06, // next: mov al, [esi]
		0x84, 0xC0, // test al, al
		0x74, 0x04, // jz pause
		0xEE,       // out dx, al
		0x46,       // inc esi
		0xEB, 0xF6, // jmp next
		0xB9, 0, 0, 0, 0x04, // pause: mov ecx, 0x04000000
		0xE2, 0xFE, // loop $
		0xEB, 0xE3, // jmp to the start
	}
	binary.LittleEndian.PutUint32(code[1:], msg)
	b.Write(code)
	b.WriteString("xenha-guest alive\n\x00")
	return b.Bytes()
}

// guestXML defines the diskless TCG guest: 16 MiB, one vCPU, serial output
// appended to console (the same file on either host of this machine). cpuXML,
// if set, is the guest's <cpu> element.
func guestXML(name, uuid, kernel, console, cpuXML string) string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s</kernel></os>
  %s
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='%s' append='on'/><target port='0'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`, name, uuid, kernel, cpuXML, console)
}

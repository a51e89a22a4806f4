package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/xenha/xenha/ha"
)

// binary is the xenha built once for the tests that run it.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func xenhaBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xenha-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "xenha")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePort is a loopback port nobody listened on a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemon is one member process.
type daemon struct {
	id, bind, api, status string
	cmd                   *exec.Cmd
	log                   *bytes.Buffer
	config                string
}

// pool is a three-member pool of xenha daemons started from config files,
// and an operator's environment for the CLI.
type pool struct {
	t       *testing.T
	bin     string
	dir     string
	members []*daemon
	env     []string // XENHA_* for the operator
	// metricsBefore is h1's /metrics before the failover.
	metricsBefore map[string]*dto.MetricFamily
}

// xenha runs the CLI and returns its stdout, stderr and exit code.
func (p *pool) xenha(server string, env []string, args ...string) (string, string, int) {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if server != "" {
		cmd.Env = append(cmd.Env, "XENHA_SERVER="+server)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("xenha %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs the CLI as the operator against the first live member and fails
// the test unless it exits 0.
func (p *pool) ok(args ...string) string {
	p.t.Helper()
	out, errOut, code := p.xenha(p.server(), p.env, args...)
	if code != 0 {
		p.t.Fatalf("xenha %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (p *pool) server() string {
	if len(p.members) == 0 {
		return "" // ca and daemon -check need no member
	}
	return "https://" + p.members[0].api
}

// jsonOf runs the CLI with --json and decodes its output into v.
func (p *pool) jsonOf(v any, args ...string) {
	p.t.Helper()
	out := p.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		p.t.Fatalf("xenha %v --json printed %q: %v", args, out, err)
	}
}

// startPool writes a CA, certificates and three member configs with the
// xenha binary alone, checks each config, and starts the members.
func startPool(t *testing.T) *pool {
	bin := xenhaBinary(t)
	dir := t.TempDir()
	p := &pool{t: t, bin: bin, dir: dir}
	ca := filepath.Join(dir, "ca")
	p.ok("ca", "init", "test", "--dir", ca)
	p.ok("ca", "issue", "operator", "admin", "--dir", ca)
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	token, bmc := write("token", "pool-token\n"), write("bmc", "bmc-password\n")
	for i := 1; i <= 3; i++ {
		d := &daemon{id: fmt.Sprintf("h%d", i), bind: freePort(t), api: freePort(t), status: freePort(t), log: &bytes.Buffer{}}
		p.members = append(p.members, d)
		p.ok("ca", "issue", "member", d.id, "--dir", ca)
	}
	for i, d := range p.members {
		fence := map[string]any{}
		for _, o := range p.members {
			if o != d {
				// A BMC that does not answer: a dead member stays suspect
				// until the operator acknowledges it is off.
				fence[o.id] = []map[string]any{{"method": "ipmi", "address": "127.0.0.1", "port": 1, "user": "fencer", "password_file": bmc, "timeout": "2s"}}
			}
		}
		m := filepath.Join(ca, "members", d.id)
		cfg := map[string]any{
			"id": d.id, "cluster_id": "test", "data_dir": filepath.Join(dir, d.id), "bind": d.bind,
			"join_token_file": token, "profile": "default", "hypervisor": "test:///default", "fence": fence,
			"tls": map[string]string{"ca": filepath.Join(m, "ca.pem"), "cert": filepath.Join(m, d.id+".pem"), "key": filepath.Join(m, d.id+".key")},
			"api": map[string]string{"listen": d.api, "status_listen": d.status, "crl": filepath.Join(ca, "crl.pem")},
		}
		if i == 0 {
			cfg["bootstrap"] = true
		} else {
			cfg["join"] = []string{p.members[0].bind}
		}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		d.config = write(d.id+".json", string(b))
		p.ok("daemon", "-check", "-config", d.config)
		p.start(d)
		if i == 0 {
			p.waitAPI(d)
		}
	}
	op := filepath.Join(ca, "operators", "admin")
	p.env = []string{"XENHA_CA=" + filepath.Join(ca, "ca.pem"), "XENHA_CERT=" + filepath.Join(op, "admin.pem"), "XENHA_KEY=" + filepath.Join(op, "admin.key")}
	t.Cleanup(p.stop)
	return p
}

// use makes the pool's helpers report to t, a subtest, until the returned
// function is called.
func (p *pool) use(t *testing.T) func() {
	old := p.t
	p.t = t
	return func() { p.t = old }
}

func (p *pool) start(d *daemon) {
	d.cmd = exec.Command(p.bin, "daemon", "-config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

// waitAPI waits until the member's status listener answers.
func (p *pool) waitAPI(d *daemon) {
	p.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, err := http.Get("http://" + d.status + "/v1/pool?stale=1"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
	}
	p.t.Fatalf("member %s's API did not come up; its log:\n%s", d.id, d.log)
}

func (p *pool) stop() {
	for _, d := range p.members {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, d := range p.members {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			done := make(chan struct{})
			go func() { _ = d.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = d.cmd.Process.Kill()
				<-done
			}
		}
		if p.t.Failed() {
			p.t.Logf("member %s's log:\n%s", d.id, d.log)
		}
	}
}

// until polls cond (with the CLI) until it holds.
func (p *pool) until(what string, timeout time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not reached after %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *pool) hosts() map[string]*ha.Host {
	var hs []*ha.Host
	p.jsonOf(&hs, "hosts")
	out := map[string]*ha.Host{}
	for _, h := range hs {
		out[h.ID] = h
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (p *pool) vm(name string) *ha.VM {
	var v ha.VM
	p.jsonOf(&v, "vm", name)
	return &v
}

// TestPoolFromConfigFiles is the operator's day with the xenha binary
// alone: three members started from config files are listed, a VM is put
// in, a member is killed and, its BMC being dead, fenced by the operator's
// acknowledgement, after which its VM runs elsewhere and the incident is
// closed; then a host is drained and brought back, and a second VM is
// migrated and removed. Every answer is
// read through --json; metrics and the status page are checked on the
// same pool.
func TestPoolFromConfigFiles(t *testing.T) {
	p := startPool(t)
	p.until("three hosts online", 90*time.Second, func() bool {
		hs := p.hosts()
		n := 0
		for _, h := range hs {
			if h.State == ha.HostOnline && h.Capacity.MemoryKiB > 0 {
				n++
			}
		}
		return n == 3
	})
	var status struct {
		Pool  Pool       `json:"pool"`
		Hosts []*ha.Host `json:"hosts"`
	}
	p.jsonOf(&status, "status")
	if status.Pool.Leader != "h1" || len(status.Pool.Members) != 3 || status.Pool.ClusterID != "test" {
		t.Fatalf("status --json: %+v", status.Pool)
	}
	p.metricsBefore = scrape(t, p.members[0].status)

	t.Run("put-vm", p.checkPutVm)
	t.Run("refusals and exit codes", p.checkRefusalsAndExitCodes)
	t.Run("status page", p.checkStatusPage)
	t.Run("fence a dead member", p.checkFenceADeadMember)
	t.Run("metrics count the failover", p.checkMetricsCountTheFailover)
	t.Run("drain", p.checkDrain)
	t.Run("migrate", p.checkMigrate)
	t.Run("events", p.checkEvents)
	t.Run("volumes and departed hosts", p.checkVolumesAndDepartedHosts)
}

func (p *pool) checkPutVm(t *testing.T) {
	defer p.use(t)()
	var res map[string]string
	p.jsonOf(&res, "put-vm", "testdata/web1.json", "--wait", "--timeout", "90s")
	if res["result"] != "done" {
		t.Fatalf("put-vm --wait --json: %v", res)
	}
	if v := p.vm("web1"); v.Host != "h3" || vmState(v) != "running" {
		t.Fatalf("web1 after put-vm --wait: host %q, %s; want running on its preferred h3", v.Host, vmState(v))
	}
	var vms []*ha.VM
	p.jsonOf(&vms, "vms")
	if len(vms) != 1 || vms[0].Name != "web1" {
		t.Fatalf("vms --json: %+v", vms)
	}
}

func (p *pool) checkRefusalsAndExitCodes(t *testing.T) {
	defer p.use(t)()
	if _, _, code := p.xenha(p.server(), p.env, "vm", "nope"); code != exitNotFound {
		t.Errorf("vm nope: exit %d, want %d", code, exitNotFound)
	}
	if _, errOut, code := p.xenha(p.server(), p.env, "disarm"); code != exitUnsupported || !strings.Contains(errOut, "not supported by this pool version") {
		t.Errorf("disarm: exit %d (%s), want %d and 'not supported by this pool version'", code, errOut, exitUnsupported)
	}
	if _, _, code := p.xenha(p.server(), p.env, "maintenance", "h3"); code != exitUsage {
		t.Errorf("maintenance without on|off: exit %d, want %d", code, exitUsage)
	}
	if _, errOut, code := p.xenha(p.server(), p.env, "fence", "h2"); code != exitFailure || !strings.Contains(errOut, "renews its lease") {
		t.Errorf("fence of a live host: exit %d (%s), want %d and a refusal", code, errOut, exitFailure)
	}
	// A member's certificate reads but may not write.
	m := filepath.Join(p.dir, "ca", "members", "h2")
	memberEnv := []string{"XENHA_CA=" + filepath.Join(m, "ca.pem"), "XENHA_CERT=" + filepath.Join(m, "h2.pem"), "XENHA_KEY=" + filepath.Join(m, "h2.key")}
	if _, _, code := p.xenha(p.server(), memberEnv, "hosts"); code != 0 {
		t.Errorf("hosts with a member certificate: exit %d", code)
	}
	if _, errOut, code := p.xenha(p.server(), memberEnv, "maintenance", "h2", "on"); code != exitFailure || !strings.Contains(errOut, "operator certificate") {
		t.Errorf("maintenance with a member certificate: exit %d (%s), want %d", code, errOut, exitFailure)
	}
	// Writes through a follower reach the leader.
	if _, errOut, code := p.xenha("https://"+p.members[1].api, p.env, "maintenance", "h2", "off"); code != 0 {
		t.Errorf("maintenance off through follower h2: exit %d: %s", code, errOut)
	}
}

func (p *pool) checkStatusPage(t *testing.T) {
	defer p.use(t)()
	statusPageInBrowser(t, "http://"+p.members[0].status+"/")
}

func (p *pool) checkFenceADeadMember(t *testing.T) {
	defer p.use(t)()
	victim := p.members[2]
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	p.until("h3 suspect", 60*time.Second, func() bool { return p.hosts()["h3"].State == ha.HostSuspect })
	if v := p.vm("web1"); v.Host != "h3" {
		t.Fatalf("web1 left h3 before any fence proof: host %q", v.Host)
	}
	var res map[string]string
	p.jsonOf(&res, "fence", "h3", "--wait", "--timeout", "60s")
	if res["result"] != "done" || p.hosts()["h3"].State != ha.HostFenced {
		t.Fatalf("fence --wait --json: %v, h3 %s", res, p.hosts()["h3"].State)
	}
	p.until("web1 running elsewhere", 90*time.Second, func() bool {
		v := p.vm("web1")
		return v.Host != "h3" && vmState(v) == "running"
	})
	var incs []*ha.Incident
	p.until("incident closed", 60*time.Second, func() bool {
		p.jsonOf(&incs, "incidents")
		return len(incs) == 1 && !incs[0].Closed.IsZero()
	})
	if incs[0].Host != "h3" || len(incs[0].VMs) != 1 {
		t.Fatalf("incident: %+v", incs[0])
	}
}

func (p *pool) checkMetricsCountTheFailover(t *testing.T) {
	defer p.use(t)()
	after := scrape(t, p.members[0].status)
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"xenha_failovers_total", map[string]string{"result": "closed"}},
		{"xenha_fences_total", map[string]string{"method": "manual"}},
		{"xenha_fence_attempts_total", map[string]string{"method": "ipmi", "result": "failure"}},
		{"xenha_failover_duration_seconds_count", nil},
		{"xenha_failover_phase_duration_seconds_count", map[string]string{"phase": "fence"}},
	} {
		b, a := value(p.metricsBefore, c.name, c.labels), value(after, c.name, c.labels)
		if a <= b {
			t.Errorf("%s%v: %v before the failover, %v after; want it to grow", c.name, c.labels, b, a)
		}
	}
	if v := value(after, "xenha_hosts", map[string]string{"state": "fenced"}); v != 1 {
		t.Errorf("xenha_hosts{state=fenced} = %v, want 1", v)
	}
	if v := value(after, "xenha_raft_state", map[string]string{"state": "Leader"}); v != 1 {
		t.Errorf("xenha_raft_state{state=Leader} on h1 = %v, want 1", v)
	}
}

func (p *pool) checkDrain(t *testing.T) {
	defer p.use(t)()
	from := p.vm("web1").Host
	to := map[string]string{"h1": "h2", "h2": "h1"}[from]
	p.ok("maintenance", from, "on", "--wait", "--timeout", "90s")
	if h := p.hosts()[from]; h.State != ha.HostMaintenance {
		t.Fatalf("%s is %s after maintenance on --wait", from, h.State)
	}
	if v := p.vm("web1"); v.Host != to || vmState(v) != "running" {
		t.Fatalf("web1 after draining %s: host %q, %s; want running on %s", from, v.Host, vmState(v), to)
	}
	p.ok("maintenance", from, "off", "--wait", "--timeout", "90s")
	// Back to the drained host, which keeps web1's stopped definition: it
	// runs there and stays (it once bounced between the two hosts for good).
	p.ok("migrate", "web1", from, "--wait", "--timeout", "90s")
	back := p.vm("web1")
	if back.Host != from || vmState(back) != "running" {
		t.Fatalf("web1 after migrate back to %s: host %q, %s", from, back.Host, vmState(back))
	}
	time.Sleep(2 * time.Second)
	if v := p.vm("web1"); v.Host != from || v.Assigned != back.Assigned {
		t.Fatalf("web1 moved on from %s by itself: host %q, assigned %d then %d", from, v.Host, back.Assigned, v.Assigned)
	}
}

func (p *pool) checkMigrate(t *testing.T) {
	defer p.use(t)()
	vm := strings.ReplaceAll(readFile(t, "testdata/web1.json"), "web1", "web2")
	vm = strings.ReplaceAll(strings.ReplaceAll(vm, "000000000001", "000000000002"), `"h3"`, `"h2"`)
	file := filepath.Join(t.TempDir(), "web2.json")
	if err := os.WriteFile(file, []byte(vm), 0o600); err != nil {
		t.Fatal(err)
	}
	p.ok("put-vm", file, "--wait", "--timeout", "90s")
	if v := p.vm("web2"); v.Host != "h2" {
		t.Fatalf("web2 on %q, want its preferred h2", v.Host)
	}
	p.ok("migrate", "web2", "h1", "--wait", "--timeout", "90s")
	if v := p.vm("web2"); v.Host != "h1" || vmState(v) != "running" {
		t.Fatalf("web2 after migrate --wait: host %q, %s", v.Host, vmState(v))
	}
	// Back to h2, which keeps web2's stopped definition: it runs there and
	// stays (it once bounced between the two hosts for good).
	p.ok("migrate", "web2", "h2", "--wait", "--timeout", "90s")
	back := p.vm("web2")
	if back.Host != "h2" || vmState(back) != "running" {
		t.Fatalf("web2 after migrate back to h2: host %q, %s", back.Host, vmState(back))
	}
	time.Sleep(2 * time.Second)
	if v := p.vm("web2"); v.Host != "h2" || v.Assigned != back.Assigned {
		t.Fatalf("web2 moved on from h2 by itself: host %q, assigned %d then %d", v.Host, back.Assigned, v.Assigned)
	}
	// A running VM is removed: the pool stops it first.
	p.ok("remove-vm", "web2", "--wait", "--timeout", "60s")
	if _, _, code := p.xenha(p.server(), p.env, "vm", "web2"); code != exitNotFound {
		t.Fatalf("vm web2 after remove-vm --wait: exit %d, want %d", code, exitNotFound)
	}
	// A VM that never ran is removed.
	stopped := strings.Replace(strings.ReplaceAll(vm, "web2", "web3"), `"policy"`, `"stopped": true, "policy"`, 1)
	if err := os.WriteFile(file, []byte(stopped), 0o600); err != nil {
		t.Fatal(err)
	}
	p.ok("put-vm", file)
	p.ok("remove-vm", "web3", "--wait")
	if _, _, code := p.xenha(p.server(), p.env, "vm", "web3"); code != exitNotFound {
		t.Fatalf("vm web3 after remove-vm --wait: exit %d, want %d", code, exitNotFound)
	}
}

func (p *pool) checkEvents(t *testing.T) {
	defer p.use(t)()
	var evs []ha.Event
	p.jsonOf(&evs, "events")
	if len(evs) == 0 {
		t.Fatal("events --json: none")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "events", "--follow", "--json")
	cmd.Env = append(append(os.Environ(), p.env...), "XENHA_SERVER="+p.server())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	buf := make([]byte, 1<<16)
	var seen strings.Builder
	// The stream follows from now on: wait for its first event (lease
	// renewals come every KeepAlive) before making the one to look for.
	if n, err := stdout.Read(buf); err != nil {
		t.Fatalf("events --follow showed nothing: %v", err)
	} else if strings.Contains(string(buf[:n]), "host.maintenance") {
		t.Fatalf("events --follow replayed the past: %s", buf[:n])
	}
	p.ok("maintenance", "h2", "on")
	for !strings.Contains(seen.String(), "host.maintenance") {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("events --follow ended before showing host.maintenance: %v\n%s", err, seen.String())
		}
		seen.Write(buf[:n])
	}
}

func (p *pool) checkVolumesAndDepartedHosts(t *testing.T) {
	defer p.use(t)()
	p.ok("put-volume", "testdata/db-volume.json")
	var vols []*ha.Volume
	p.jsonOf(&vols, "volumes")
	if len(vols) != 1 || vols[0].ID != "db" || vols[0].Kind != "nbd" {
		t.Fatalf("volumes --json: %+v", vols)
	}
	p.ok("remove-volume", "db")
	p.jsonOf(&vols, "volumes")
	if len(vols) != 0 {
		t.Fatalf("volumes --json after remove-volume: %+v", vols)
	}
	// h3 was fenced: removing it leaves two live voters, and it leaves the list.
	p.ok("remove-host", "h3", "--wait", "--timeout", "60s")
	if hs := p.hosts(); hs["h3"] != nil || len(hs) != 2 {
		t.Fatalf("hosts --json after remove-host h3: %v", hs)
	}
	var status struct {
		Pool Pool `json:"pool"`
	}
	p.jsonOf(&status, "status")
	if len(status.Pool.Members) != 2 {
		t.Fatalf("Raft members after remove-host h3: %+v", status.Pool.Members)
	}
}

package libvirt

import (
	"errors"
	"strings"
	"testing"

	"libvirt.org/go/libvirt"

	"github.com/xenha/xenha/xenctl"
)

// TestLibvirtNumbering checks that the numeric values state.go relies on are
// the bindings' constants.
func TestLibvirtNumbering(t *testing.T) {
	pairs := []struct {
		name     string
		ours, lv int
	}{
		{"NOSTATE", vNoState, int(libvirt.DOMAIN_NOSTATE)},
		{"RUNNING", vRunning, int(libvirt.DOMAIN_RUNNING)},
		{"BLOCKED", vBlocked, int(libvirt.DOMAIN_BLOCKED)},
		{"PAUSED", vPaused, int(libvirt.DOMAIN_PAUSED)},
		{"SHUTDOWN", vShutdown, int(libvirt.DOMAIN_SHUTDOWN)},
		{"SHUTOFF", vShutoff, int(libvirt.DOMAIN_SHUTOFF)},
		{"CRASHED", vCrashed, int(libvirt.DOMAIN_CRASHED)},
		{"PMSUSPENDED", vPMSuspended, int(libvirt.DOMAIN_PMSUSPENDED)},
		{"EVENT_DEFINED", evDefined, int(libvirt.DOMAIN_EVENT_DEFINED)},
		{"EVENT_UNDEFINED", evUndefined, int(libvirt.DOMAIN_EVENT_UNDEFINED)},
		{"EVENT_STARTED", evStarted, int(libvirt.DOMAIN_EVENT_STARTED)},
		{"EVENT_SUSPENDED", evSuspended, int(libvirt.DOMAIN_EVENT_SUSPENDED)},
		{"EVENT_RESUMED", evResumed, int(libvirt.DOMAIN_EVENT_RESUMED)},
		{"EVENT_STOPPED", evStopped, int(libvirt.DOMAIN_EVENT_STOPPED)},
		{"EVENT_SHUTDOWN", evShutdown, int(libvirt.DOMAIN_EVENT_SHUTDOWN)},
		{"EVENT_PMSUSPENDED", evPMSuspended, int(libvirt.DOMAIN_EVENT_PMSUSPENDED)},
		{"EVENT_CRASHED", evCrashed, int(libvirt.DOMAIN_EVENT_CRASHED)},
		{"STOPPED_CRASHED", stoppedCrashed, int(libvirt.DOMAIN_EVENT_STOPPED_CRASHED)},
		{"SHUTOFF_DAEMON", 8, int(libvirt.DOMAIN_SHUTOFF_DAEMON)},
		{"SHUTOFF_DESTROYED", 2, int(libvirt.DOMAIN_SHUTOFF_DESTROYED)},
		{"RUNNING_MIGRATED", 2, int(libvirt.DOMAIN_RUNNING_MIGRATED)},
		{"PAUSED_MIGRATION", 2, int(libvirt.DOMAIN_PAUSED_MIGRATION)},
		{"STOPPED_MIGRATED", 3, int(libvirt.DOMAIN_EVENT_STOPPED_MIGRATED)},
		{"CRASHED_PANICKED", 1, int(libvirt.DOMAIN_CRASHED_PANICKED)},
	}
	for _, p := range pairs {
		if p.ours != p.lv {
			t.Errorf("%s: state.go uses %d, libvirt says %d", p.name, p.ours, p.lv)
		}
	}
	if n := len(reasonNames[vShutoff]); n != int(libvirt.DOMAIN_SHUTOFF_DAEMON)+1 {
		t.Errorf("shutoff reasons: %d names, libvirt has %d", n, int(libvirt.DOMAIN_SHUTOFF_DAEMON)+1)
	}
}

func TestMapState(t *testing.T) {
	for _, tc := range []struct {
		state, reason int
		want          xenctl.State
		reasonName    string
	}{
		{vRunning, 1, xenctl.StateRunning, "booted"},
		{vBlocked, 0, xenctl.StateRunning, "unknown"},
		{vPaused, 2, xenctl.StatePaused, "migrating"},
		{vShutdown, 1, xenctl.StateShuttingDown, "user"},
		{vShutoff, 2, xenctl.StateShutoff, "destroyed"},
		{vShutoff, 4, xenctl.StateShutoff, "migrated"},
		{vShutoff, 8, xenctl.StateShutoff, "daemon"},
		{vCrashed, 1, xenctl.StateCrashed, "panicked"},
		{vPMSuspended, 0, xenctl.StatePMSuspended, "unknown"},
		{vNoState, 0, xenctl.StateUnknown, "unknown"},
		{42, 0, xenctl.StateUnknown, "reason 0"},
		{vShutoff, 99, xenctl.StateShutoff, "reason 99"},
	} {
		s, r := mapState(tc.state, tc.reason)
		if s != tc.want || r != tc.reasonName {
			t.Errorf("mapState(%d, %d) = %s %q, want %s %q", tc.state, tc.reason, s, r, tc.want, tc.reasonName)
		}
	}
}

func TestMapEvent(t *testing.T) {
	for _, tc := range []struct {
		event, detail int
		kind          xenctl.EventKind
		state         xenctl.State
		reason        string
		ok            bool
	}{
		{evDefined, 0, xenctl.EventDefined, xenctl.StateShutoff, "added", true},
		{evDefined, 1, xenctl.EventDefined, xenctl.StateUnknown, "updated", true},
		{evUndefined, 0, xenctl.EventUndefined, xenctl.StateUnknown, "removed", true},
		{evStarted, 1, xenctl.EventStarted, xenctl.StateRunning, "migrated", true},
		{evSuspended, 1, xenctl.EventSuspended, xenctl.StatePaused, "migrated", true},
		{evResumed, 0, xenctl.EventResumed, xenctl.StateRunning, "unpaused", true},
		{evStopped, 1, xenctl.EventStopped, xenctl.StateShutoff, "destroyed", true},
		{evStopped, 3, xenctl.EventStopped, xenctl.StateShutoff, "migrated", true},
		{evStopped, 2, xenctl.EventCrashed, xenctl.StateShutoff, "crashed", true},
		{evCrashed, 0, xenctl.EventCrashed, xenctl.StateCrashed, "panicked", true},
		{evPMSuspended, 0, xenctl.EventSuspended, xenctl.StatePMSuspended, "memory", true},
		{evShutdown, 1, 0, xenctl.StateUnknown, "guest", false},
		{77, 0, 0, xenctl.StateUnknown, "detail 0", false},
	} {
		kind, state, reason, _, ok := mapEvent(tc.event, tc.detail)
		if kind != tc.kind || state != tc.state || reason != tc.reason || ok != tc.ok {
			t.Errorf("mapEvent(%d, %d) = %s %s %q %v, want %s %s %q %v", tc.event, tc.detail,
				kind, state, reason, ok, tc.kind, tc.state, tc.reason, tc.ok)
		}
	}
}

func TestSentinelFor(t *testing.T) {
	for _, tc := range []struct {
		code  libvirt.ErrorNumber
		alive bool
		want  error
	}{
		{libvirt.ERR_NO_DOMAIN, true, xenctl.ErrNoDomain},
		{libvirt.ERR_NO_DOMAIN, false, xenctl.ErrUnavailable},
		{libvirt.ERR_SYSTEM_ERROR, true, xenctl.ErrUnavailable},
		{libvirt.ERR_RPC, true, xenctl.ErrUnavailable},
		{libvirt.ERR_INTERNAL_ERROR, false, xenctl.ErrUnavailable},
		{libvirt.ERR_INTERNAL_ERROR, true, nil},
		{libvirt.ERR_XML_ERROR, true, xenctl.ErrInvalidDomain},
		{libvirt.ERR_NO_SUPPORT, true, xenctl.ErrNotSupported},
		{libvirt.ERR_CPU_INCOMPATIBLE, true, xenctl.ErrCPUIncompatible},
		{libvirt.ERR_DOM_EXIST, true, xenctl.ErrConflict},
	} {
		if got := sentinelFor(tc.code, tc.alive); got != tc.want {
			t.Errorf("sentinelFor(%d, alive=%v) = %v, want %v", tc.code, tc.alive, got, tc.want)
		}
	}
	err := wrapErr("qemu:///system", "start \"vm1\"", libvirt.Error{Code: libvirt.ERR_NO_DOMAIN, Message: "Domain not found"}, true)
	var lv libvirt.Error
	if !errors.Is(err, xenctl.ErrNoDomain) || !errors.As(err, &lv) || !strings.Contains(err.Error(), "qemu:///system") {
		t.Errorf("wrapErr = %v; want ErrNoDomain, the libvirt error and the URI", err)
	}
}

func TestCheckDefinition(t *testing.T) {
	good := "<domain type='%s'><name>a</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><memory>1024</memory></domain>"
	for _, tc := range []struct {
		typ, driver string
		ok          bool
	}{
		{"kvm", "QEMU", true}, {"qemu", "QEMU", true}, {"xen", "QEMU", false},
		{"xen", "Xen", true}, {"kvm", "Xen", false},
		{"test", "TEST", true}, {"qemu", "TEST", false},
		{"lxc", "LXC", true},
	} {
		_, err := checkDefinition(strings.Replace(good, "%s", tc.typ, 1), tc.driver)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, xenctl.ErrInvalidDomain)) {
			t.Errorf("type %s on %s: %v, want ok=%v", tc.typ, tc.driver, err, tc.ok)
		}
	}
}

func TestCPUOfDomain(t *testing.T) {
	live := `<domain type='qemu'><name>a</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><memory>1024</memory>
	  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
	  <cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>qemu64</model>
	    <topology sockets='1' dies='1' cores='1' threads='1'/><feature policy='require' name='avx512f'/></cpu>
	  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>`
	g, err := cpuOfDomain(live)
	if err != nil {
		t.Fatal(err)
	}
	if g.Arch != "x86_64" || g.Machine != "pc-i440fx-7.2" || g.VirtType != "qemu" || g.Emulator != "/usr/bin/qemu-system-x86_64" {
		t.Errorf("cpuOfDomain = %+v", g)
	}
	if !strings.Contains(g.XML, "qemu64") || !strings.Contains(g.XML, "avx512f") || strings.Contains(g.XML, "topology") {
		t.Errorf("CPU XML %s: want model and feature, no topology", g.XML)
	}
	pass, _ := cpuOfDomain(strings.Replace(live, "mode='custom'", "mode='host-passthrough'", 1))
	if pass.XML != "" {
		t.Errorf("host-passthrough CPU gave XML %s; want nothing to compare", pass.XML)
	}
	if _, err := cpuOfDomain("<domain"); err == nil {
		t.Error("cpuOfDomain accepted broken XML")
	}
}

func TestListenHost(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://127.0.0.1":        "127.0.0.1",
		"tcp://198.18.0.2:49152": "198.18.0.2",
		"tcp://[::1]:49152":      "::1",
		"tcp://host-b":           "",
		"%%":                     "",
	} {
		if got := listenHost(in); got != want {
			t.Errorf("listenHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDefine exercises the pure-Go path a definition takes before it reaches
// libvirt: no panic, every rejection wraps ErrInvalidDomain, and an accepted
// definition's type suits the driver.
func FuzzDefine(f *testing.F) {
	f.Add("<domain type='test'><name>a</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><memory>1024</memory></domain>", "TEST")
	f.Add("<domain type='kvm'><name>b</name><uuid>4DEA22B31D52D8F32516782E98AB3FA0</uuid><memory unit='G'>2</memory><vcpu>2</vcpu></domain>", "QEMU")
	f.Add("<domain type='xen'><name>c</name></domain>", "Xen")
	f.Add("<domain", "QEMU")
	f.Fuzz(func(t *testing.T, xml, driver string) {
		spec, err := checkDefinition(xml, driver)
		if err != nil {
			if !errors.Is(err, xenctl.ErrInvalidDomain) {
				t.Fatalf("error %v does not wrap ErrInvalidDomain", err)
			}
			return
		}
		if types, ok := driverDomainTypes[driver]; ok {
			found := false
			for _, ty := range types {
				found = found || ty == spec.Type
			}
			if !found {
				t.Fatalf("accepted type %q for driver %s", spec.Type, driver)
			}
		}
		if spec.Name == "" || spec.UUID == "" || spec.MemoryKiB == 0 {
			t.Fatalf("accepted incomplete definition %+v", spec)
		}
	})
}

func TestMigrationParams(t *testing.T) {
	opts := xenctl.MigrateOptions{URI: "qemu+ssh://b/system", Address: "tcp://198.18.0.2", BandwidthMiBs: 100, Persist: true, Unsafe: true}
	p, flags, err := migrationParams(opts, "QEMU")
	if err != nil {
		t.Fatal(err)
	}
	want := libvirt.MIGRATE_LIVE | libvirt.MIGRATE_ABORT_ON_ERROR | libvirt.MIGRATE_PERSIST_DEST | libvirt.MIGRATE_UNDEFINE_SOURCE | libvirt.MIGRATE_UNSAFE
	if flags != want || !p.URISet || p.URI != "tcp://198.18.0.2" || p.ListenAddress != "198.18.0.2" || p.Bandwidth != 100 {
		t.Errorf("qemu: flags %b params %+v", flags, p)
	}
	opts.BandwidthMiBs = 0
	p, flags, err = migrationParams(opts, "Xen")
	if err != nil {
		t.Fatal(err)
	}
	if flags != libvirt.MIGRATE_LIVE|libvirt.MIGRATE_PERSIST_DEST|libvirt.MIGRATE_UNDEFINE_SOURCE || p.ListenAddressSet || p.BandwidthSet {
		t.Errorf("xen: flags %b params %+v; libxl takes neither abort-on-error, unsafe, listen address nor bandwidth", flags, p)
	}
	opts.BandwidthMiBs = 10
	if _, _, err := migrationParams(opts, "Xen"); !errors.Is(err, xenctl.ErrNotSupported) {
		t.Errorf("xen with bandwidth: %v, want ErrNotSupported", err)
	}
}

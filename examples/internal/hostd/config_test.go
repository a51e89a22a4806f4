package hostd

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
)

func TestDecodeExamples(t *testing.T) {
	f, err := LoadFile("testdata/xen-a.json")
	if err != nil {
		t.Fatal(err)
	}
	if f.ID != "xen-a" || f.Profile != "fastlan" || time.Duration(f.Timings.Lease) != 900*time.Millisecond ||
		len(f.Fence["xen-b"]) != 1 || time.Duration(f.Fence["xen-b"][0].Timeout) != 10*time.Second ||
		f.Netguard == nil || f.Netguard.Bridge != "xenbr0" || len(f.Storage) != 2 {
		t.Fatalf("decoded %+v", f)
	}
	w, err := LoadFile("testdata/witness.json")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := parseRole(w.Role); r != "witness" || w.Hypervisor != "" {
		t.Fatalf("witness decoded as %+v", w)
	}
	if p, _ := parseFencePolicy(f.FencePolicy); p != ha.RequireFence || f.watchdogTimeout() != 0 {
		t.Fatalf("fence_policy defaults to %q (watchdog timeout %v), want require-fence", p, f.watchdogTimeout())
	}
	l, err := LoadFile("testdata/lease-expiry.json")
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := parseFencePolicy(l.FencePolicy); p != ha.AllowLeaseExpiry || l.Watchdog == nil ||
		l.Watchdog.Device != "/dev/watchdog" || time.Duration(l.Watchdog.PetInterval) != time.Second ||
		l.watchdogTimeout() != 5*time.Second {
		t.Fatalf("lease-expiry decoded as %+v (watchdog %+v, watchdog timeout %v)", l, l.Watchdog, l.watchdogTimeout())
	}
}

// TestDecodeWatchdog: fence_policy, watchdog and timings.watchdog_timeout
// are checked against each other, the role and the lease arithmetic, with
// errors naming the field to fix.
func TestDecodeWatchdog(t *testing.T) {
	base, err := os.ReadFile("testdata/lease-expiry.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(pairs ...string) string {
		s := string(base)
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("testdata lacks %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	const (
		dog    = `"watchdog": {"device": "/dev/watchdog", "timeout": "5s", "pet_interval": "1s"},`
		vmHost = `"hypervisor": "xen:///system",
  "netguard": {"bridge": "xenbr0"},
  "storage": ["drbd"]`
		asWitness = `"role": "witness", "storage": []`
	)
	for _, tc := range []struct {
		name, in    string
		wantTimeout time.Duration // for accepted files
		wantErr     string
	}{
		{"as given", string(base), 5 * time.Second, ""},
		{"explicit watchdog_timeout", edit(`"reassign_after": "6s"`, `"reassign_after": "9s", "watchdog_timeout": "8s"`), 8 * time.Second, ""},
		{"default watchdog timeout", edit(`"timeout": "5s", `, ``, `"6s"`, `"11s"`), 10 * time.Second, ""},
		{"watchdog under require-fence", edit(`"allow-lease-expiry"`, `"require-fence"`), 0, ""},
		{"witness under allow-lease-expiry", edit(dog, ``, vmHost, asWitness, `"reassign_after": "6s"`, `"reassign_after": "6s", "watchdog_timeout": "5s"`), 5 * time.Second, ""},

		{"unknown policy", edit(`"allow-lease-expiry"`, `"hope"`), 0, `fence_policy: "hope"`},
		{"no watchdog on a VM host", edit(dog, ``), 0, "watchdog: missing"},
		{"watchdog on a witness", edit(vmHost, asWitness), 0, "watchdog: set on a witness"},
		{"no device", edit(`"device": "/dev/watchdog", `, ``), 0, "watchdog.device: missing"},
		{"pet not shorter than timeout", edit(`"pet_interval": "1s"`, `"pet_interval": "5s"`), 0, "watchdog.pet_interval"},
		{"bad pet interval", edit(`"pet_interval": "1s"`, `"pet_interval": "often"`), 0, `duration "often"`},
		{"unknown watchdog key", edit(`"pet_interval"`, `"pet"`), 0, `unknown field "pet"`},
		{"reassign_after too short", edit(`"6s"`, `"5s"`), 0, "timings.reassign_after: 5s must be at least lease (900ms) + watchdog_timeout (5s)"},
		{"profile's reassign_after too short", edit(`, "reassign_after": "6s"`, ``), 0, "timings.reassign_after"},
		{"watchdog_timeout below the device's", edit(`"reassign_after": "6s"`, `"reassign_after": "6s", "watchdog_timeout": "4s"`), 0, "timings.watchdog_timeout: 4s is shorter than watchdog.timeout (5s)"},
		{"watchdog_timeout under require-fence", edit(`"allow-lease-expiry"`, `"require-fence"`, `"reassign_after": "6s"`, `"reassign_after": "6s", "watchdog_timeout": "5s"`), 0, "timings.watchdog_timeout: set, but fence_policy"},
		{"witness without watchdog_timeout", edit(dog, ``, vmHost, asWitness), 0, "timings.watchdog_timeout: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode(strings.NewReader(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := f.watchdogTimeout(); got != tc.wantTimeout {
					t.Fatalf("watchdog timeout %v, want %v", got, tc.wantTimeout)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q; want ErrConfig mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecodeRejects: every malformed file is refused with ErrConfig and a
// message naming what to fix.
func TestDecodeRejects(t *testing.T) {
	base, err := os.ReadFile("testdata/xen-a.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(base), old) {
			t.Fatalf("testdata lacks %q", old)
		}
		return strings.Replace(string(base), old, new, 1)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "EOF"},
		{"not json", "id: xen-a", "line 1, column 1"},
		{"syntax error line", edit(`"profile": "fastlan",`, `"profile": "fastlan"`), "line 10, column 3"},
		{"unknown field", edit(`"profile"`, `"profil"`), `unknown field "profil"`},
		{"wrong type", edit(`"storage": ["nbd", "drbd"]`, `"storage": "nbd"`), "storage"},
		{"trailing data", string(base) + "{}", "data after"},
		{"no id", edit(`"id": "xen-a",`, ``), "id: missing"},
		{"bad bind", edit(`"198.18.0.1:7946"`, `"198.18.0.1"`), "bind:"},
		{"bad join", edit(`["198.18.0.2:7946"]`, `["xen-b"]`), "join[0]"},
		{"bootstrap and join", edit(`"join":`, `"bootstrap": true, "join":`), "bootstrap: set together with join"},
		{"bad role", edit(`"profile"`, `"role": "boss", "profile"`), `role: "boss"`},
		{"bad profile", edit(`"fastlan"`, `"turbo"`), `profile: "turbo"`},
		{"bad duration", edit(`"500ms"`, `"half a second"`), `duration "half a second"`},
		{"negative duration", edit(`"500ms"`, `"-5s"`), "negative"},
		{"number duration", edit(`"500ms"`, `500`), "want a duration string"},
		{"no tls key", edit(`, "key": "/etc/xenha/xen-a.key"`, ``), "tls: ca, cert and key"},
		{"no token", edit(`"join_token_file": "/etc/xenha/token",`, ``), "join_token_file: missing"},
		{"no hypervisor", edit(`"hypervisor": "xen:///system",`, ``), "hypervisor: missing"},
		{"witness with hypervisor", edit(`"profile"`, `"role": "witness", "profile"`), "a witness runs no VMs"},
		{"fence no levels", edit(`[{"method": "ipmi", "address": "198.18.10.2", "user": "fencer", "password_file": "/etc/xenha/bmc-xen-b", "timeout": "10s"}]`, `[]`), "fence.xen-b: no levels"},
		{"fence bad method", edit(`"method": "ipmi"`, `"method": "prayer"`), `fence.xen-b[0].method: "prayer"`},
		{"fence password inline", edit(`"password_file": "/etc/xenha/bmc-xen-b"`, `"password": "secret"`), `unknown field "password"`},
		{"fence no password", edit(`, "password_file": "/etc/xenha/bmc-xen-b"`, ``), "fence.xen-b[0].password_file: missing"},
		{"fence bad interface", edit(`"user": "fencer",`, `"user": "fencer", "interface": "serial",`), "fence.xen-b[0].interface"},
		{"fence bad port", edit(`"user": "fencer",`, `"user": "fencer", "port": 70000,`), "fence.xen-b[0].port"},
		{"unknown storage", edit(`["nbd", "drbd"]`, `["nbd", "ceph"]`), `storage: "ceph"`},
		{"storage twice", edit(`["nbd", "drbd"]`, `["nbd", "nbd"]`), "listed twice"},
		{"long bridge", edit(`"xenbr0"`, `"a-very-long-bridge-name"`), "netguard.bridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile("testdata/does-not-exist.json")
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "does-not-exist") {
		t.Fatalf("LoadFile of a missing file = %v", err)
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := `{"id": "` + strings.Repeat("a", maxConfigSize) + `"}`
	if _, err := Decode(strings.NewReader(big)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Decode of an oversized file = %v", err)
	}
}

// FuzzDecode: any input either decodes into a file that passes its own
// checks, or is refused with ErrConfig; never a panic.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{"testdata/xen-a.json", "testdata/witness.json", "testdata/lease-expiry.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","timings":{"lease":"1h"}}`))
	f.Add([]byte(`{"fence":{"h":[{"method":"ipmi","port":-1}]}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"fence":{"h":[{"method":"sbd"},{"method":"agent","options":{"password":"x"}},{"method":"watchdog"}]},"timings":{"keepalive":"9s"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// What -check reports (without the reachability probes) is a list
		// of ErrConfig problems, never a panic.
		if parsed, err := Parse(strings.NewReader(string(data))); err == nil {
			role, _ := parseRole(parsed.Role)
			for _, p := range append(parsed.problems(), parsed.timings(role)) {
				if p != nil && !errors.Is(p, ErrConfig) {
					t.Fatalf("problem %v does not wrap ErrConfig", p)
				}
			}
		}
		cfg, err := Decode(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if err := cfg.check(); err != nil {
			t.Fatalf("decoded file fails its own check: %v", err)
		}
	})
}

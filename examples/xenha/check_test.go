package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goodConfig is a member's configuration whose files exist.
func goodConfig(t *testing.T) (map[string]any, string) {
	dir := t.TempDir()
	for _, f := range []string{"token", "bmc", "ca.pem", "h1.pem", "h1.key", "sbd0"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := func(f string) string { return filepath.Join(dir, f) }
	return map[string]any{
		"id": "h1", "cluster_id": "pool", "data_dir": p("data"), "bind": "127.0.0.1:7946",
		"bootstrap": true, "join_token_file": p("token"), "hypervisor": "test:///default",
		"tls": map[string]any{"ca": p("ca.pem"), "cert": p("h1.pem"), "key": p("h1.key")},
		"fence": map[string]any{
			"h2": []any{
				map[string]any{"method": "ipmi", "address": "127.0.0.1", "user": "fencer", "password_file": p("bmc")},
				map[string]any{"method": "sbd", "devices": []string{p("sbd0")}},
			},
			"h3": []any{
				map[string]any{"method": "agent", "agent": "sh", "options": map[string]string{"ip": "127.0.0.1"}},
				map[string]any{"method": "watchdog", "watchdog_timeout": "10s"},
			},
		},
		"storage": []string{"iscsi", "nfs", "nbd", "drbd"},
		"api":     map[string]any{"listen": "127.0.0.1:7947"},
	}, dir
}

func check(t *testing.T, cfg map[string]any) (string, int) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "member.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"daemon", "-check", "-config", path}, &out, &errb)
	return errb.String(), code
}

func TestDaemonCheckAcceptsEveryBackend(t *testing.T) {
	cfg, _ := goodConfig(t)
	if msg, code := check(t, cfg); code != exitOK {
		t.Fatalf("daemon -check of a good configuration: exit %d\n%s", code, msg)
	}
}

// TestDaemonCheckRejects: each bad configuration exits non-zero with one
// line per problem, naming the field.
func TestDaemonCheckRejects(t *testing.T) {
	level := func(cfg map[string]any, host string, i int) map[string]any {
		return cfg["fence"].(map[string]any)[host].([]any)[i].(map[string]any)
	}
	for _, tc := range []struct {
		name   string
		edit   func(cfg map[string]any, dir string)
		fields []string
	}{
		{"unknown key", func(c map[string]any, _ string) { c["deadtime"] = "5s" }, []string{`unknown field "deadtime"`}},
		{"unknown nested key", func(c map[string]any, _ string) { level(c, "h2", 0)["passwd"] = "x" }, []string{`unknown field "passwd"`}},
		{"dead time within keep-alives", func(c map[string]any, _ string) {
			c["timings"] = map[string]string{"keepalive": "2s", "deadtime": "1s"}
		}, []string{"timings."}},
		{"lease past reassignment", func(c map[string]any, _ string) {
			c["timings"] = map[string]string{"lease": "20s", "reassign_after": "10s"}
		}, []string{"timings."}},
		{"VM host with no fencer", func(c map[string]any, _ string) { delete(c, "fence") }, []string{"fence: missing"}},
		{"unreachable BMC", func(c map[string]any, _ string) { level(c, "h2", 0)["address"] = "bmc.invalid" }, []string{"fence.h2[0].address"}},
		{"missing password file", func(c map[string]any, dir string) {
			level(c, "h2", 0)["password_file"] = filepath.Join(dir, "nope")
		}, []string{"fence.h2[0].password_file"}},
		{"missing SBD device", func(c map[string]any, dir string) {
			level(c, "h2", 1)["devices"] = []string{filepath.Join(dir, "nope")}
		}, []string{"fence.h2[1].devices[0]"}},
		{"agent not installed", func(c map[string]any, _ string) { level(c, "h3", 0)["agent"] = "fence_nonexistent_xyz" }, []string{"fence.h3[0].agent"}},
		{"password inline", func(c map[string]any, _ string) {
			level(c, "h3", 0)["options"] = map[string]string{"password": "s3cret"}
		}, []string{"fence.h3[0].options.password"}},
		{"libvirt fencer without domain", func(c map[string]any, _ string) {
			c["fence"].(map[string]any)["h4"] = []any{map[string]any{"method": "libvirt", "uri": "test:///default"}}
		}, []string{"fence.h4[0].domain"}},
		{"watchdog fencer without timeout", func(c map[string]any, _ string) { delete(level(c, "h3", 1), "watchdog_timeout") }, []string{"fence.h3[1].watchdog_timeout"}},
		{"unknown method", func(c map[string]any, _ string) { level(c, "h2", 0)["method"] = "telepathy" }, []string{"fence.h2[0].method"}},
		{"unknown storage", func(c map[string]any, _ string) { c["storage"] = []string{"ceph"} }, []string{"storage"}},
		{"bad role", func(c map[string]any, _ string) { c["role"] = "boss" }, []string{"role"}},
		{"witness with a hypervisor", func(c map[string]any, _ string) { c["role"] = "witness" }, []string{"role: a witness runs no VMs"}},
		{"bad API address", func(c map[string]any, _ string) { c["api"] = map[string]any{"listen": "7947"} }, []string{"api.listen"}},
		{"several problems", func(c map[string]any, _ string) {
			delete(c, "id")
			c["bind"] = "nowhere"
			level(c, "h2", 0)["user"] = ""
		}, []string{"id: missing", "bind:", "fence.h2[0].user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, dir := goodConfig(t)
			tc.edit(cfg, dir)
			msg, code := check(t, cfg)
			if code == exitOK {
				t.Fatalf("daemon -check accepted it")
			}
			for _, f := range tc.fields {
				if !strings.Contains(msg, f) {
					t.Errorf("output does not name %q:\n%s", f, msg)
				}
			}
			lines := strings.Split(strings.TrimSpace(msg), "\n")
			if len(lines) < len(tc.fields) {
				t.Errorf("%d lines for %d problems:\n%s", len(lines), len(tc.fields), msg)
			}
		})
	}
}

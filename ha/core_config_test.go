package ha

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func validBase(profile Config) Config {
	c := profile
	c.ID, c.ClusterID, c.DataDir, c.BindAddr, c.JoinToken, c.Insecure = "h1", "pool", "/var/lib/xenha", "198.18.0.1:7946", "secret", true
	return c
}

func TestProfilesAreValid(t *testing.T) {
	for name, p := range map[string]Config{"DefaultConfig": DefaultConfig(), "FastLAN": FastLAN()} {
		c := validBase(p)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	f := FastLAN()
	if f.HeartbeatTimeout != 500*time.Millisecond || f.LeaderLeaseTimeout != 250*time.Millisecond || f.CommitTimeout != 25*time.Millisecond ||
		f.Lease != 800*time.Millisecond || f.ReassignAfter != 850*time.Millisecond || f.DeadTime != 400*time.Millisecond {
		t.Errorf("FastLAN drifted from the measured profile: %+v", f)
	}
}

func TestValidateNamesTheFieldToChange(t *testing.T) {
	tests := []struct {
		field  string
		adjust func(c *Config)
		says   string
	}{
		{"ID", func(c *Config) { c.ID = "" }, "empty"},
		{"ID", func(c *Config) { c.ID = "Host_1" }, "lower-case"},
		{"ClusterID", func(c *Config) { c.ClusterID = "" }, "empty"},
		{"DataDir", func(c *Config) { c.DataDir = "" }, "InmemStore"},
		{"BindAddr", func(c *Config) { c.BindAddr = "" }, "listen"},
		{"Role", func(c *Config) { c.Role = "boss" }, "not a role"},
		{"TLS", func(c *Config) { c.Insecure = false }, "Insecure"},
		{"Insecure", func(c *Config) {
			c.TLS = &TLSConfig{CA: x509.NewCertPool(), Cert: tls.Certificate{Certificate: [][]byte{{1}}}}
		}, "choose one"},
		{"TLS", func(c *Config) { c.Insecure, c.TLS = false, &TLSConfig{} }, "both CA and Cert"},
		{"JoinToken", func(c *Config) { c.JoinToken = "" }, "secret"},
		{"MaxVoters", func(c *Config) { c.MaxVoters = 4 }, "odd"},
		{"RemoveDeadAfter", func(c *Config) { c.RemoveDeadAfter = -1 }, "negative"},
		{"HeartbeatTimeout", func(c *Config) { c.HeartbeatTimeout = 200 * time.Millisecond }, "spuriously"},
		{"ElectionTimeout", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "250ms"},
		{"LeaderLeaseTimeout", func(c *Config) { c.LeaderLeaseTimeout = 2 * time.Second }, "HeartbeatTimeout"},
		{"CommitTimeout", func(c *Config) { c.CommitTimeout = 0 }, "positive"},
		{"SnapshotThreshold", func(c *Config) { c.SnapshotThreshold = 0 }, "8192"},
		{"SnapshotInterval", func(c *Config) { c.SnapshotInterval = 0 }, "2m"},
		{"KeepAlive", func(c *Config) { c.KeepAlive = 0 }, "renewal"},
		{"WarnTime", func(c *Config) { c.WarnTime = c.KeepAlive / 2 }, "raise WarnTime"},
		{"DeadTime", func(c *Config) { c.DeadTime = c.WarnTime }, "raise DeadTime"},
		{"Lease", func(c *Config) { c.Lease = c.DeadTime }, "raise Lease"},
		{"ReassignAfter", func(c *Config) { c.ReassignAfter = 900 * time.Millisecond; c.Lease = 900 * time.Millisecond }, "Lease (900ms) must be shorter than ReassignAfter (900ms)"},
		{"IsolationLead", func(c *Config) { c.IsolationLead = c.Lease }, "between 0 and Lease"},
		{"WatchdogTimeout", func(c *Config) { c.FencePolicy = AllowLeaseExpiry }, "watchdog"},
		{"ReassignAfter", func(c *Config) { c.FencePolicy, c.WatchdogTimeout = AllowLeaseExpiry, time.Second }, "Lease + WatchdogTimeout"},
		{"FencePolicy", func(c *Config) { c.FencePolicy = "hope" }, "RequireFence"},
		{"IsolationResponse", func(c *Config) { c.IsolationResponse = IsolationResponse{Action: IsolateShutdown} }, "grace"},
		{"IsolationResponse", func(c *Config) { c.IsolationResponse.Action = "pray" }, "IsolatePause"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"/"+tt.says, func(t *testing.T) {
			c := validBase(FastLAN())
			tt.adjust(&c)
			before := c
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want a *ConfigError", err)
			}
			if ce.Field != tt.field {
				t.Errorf("names %s, want %s: %v", ce.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%q does not say %q", err, tt.says)
			}
			if c.ID != before.ID || c.Lease != before.Lease || c.Role != before.Role {
				t.Error("Validate changed the config")
			}
		})
	}
}

package ha

import (
	"errors"
	"testing"
	"time"

	"github.com/xenha/xenha/storage"
	"github.com/xenha/xenha/xenctl"
)

// pauseless is a hypervisor without xenctl.Pauser.
type pauseless struct{ xenctl.Hypervisor }

func TestValidateFailover(t *testing.T) {
	base := func() Config {
		c := FastLAN()
		c.ID, c.ClusterID, c.BindAddr, c.JoinToken, c.Insecure, c.InmemStore = "h1", "c", "127.0.0.1:0", "t", true, true
		return c
	}
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string // "" for valid
	}{
		{"FastLAN is valid", func(c *Config) {}, ""},
		{"no retry schedule uses the default", func(c *Config) { c.FenceRetry = Backoff{} }, ""},
		{"retry without initial", func(c *Config) { c.FenceRetry = Backoff{Max: time.Second, Factor: 2} }, "FenceRetry"},
		{"retry max below initial", func(c *Config) { c.FenceRetry = Backoff{Initial: time.Second, Max: time.Millisecond, Factor: 2} }, "FenceRetry"},
		{"retry shrinking", func(c *Config) { c.FenceRetry = Backoff{Initial: time.Second, Max: time.Second, Factor: 0.5} }, "FenceRetry"},
		{"watchdog without its policy", func(c *Config) { c.WatchdogTimeout = time.Second }, "FencePolicy"},
		{"storage without backend", func(c *Config) { c.Storage = map[string]storage.Backend{"nbd": nil} }, "Storage"},
		{"witness with a hypervisor", func(c *Config) { c.Role, c.Hypervisor = RoleWitness, pauseless{} }, "Hypervisor"},
		{"pause on a hypervisor that cannot", func(c *Config) {
			c.Hypervisor, c.IsolationResponse.Action = pauseless{}, IsolatePause
		}, "IsolationResponse"},
		{"half a capacity", func(c *Config) { c.Capacity = &Capacity{MemoryKiB: 1 << 20} }, "Capacity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want a ConfigError naming %s", err, tt.field)
			}
		})
	}
	c := base()
	if got := isolationAction(&c); got != IsolateDestroy {
		t.Errorf("no hypervisor: isolation %s, want destroy", got)
	}
	c.Hypervisor = pauseless{}
	if got := isolationAction(&c); got != IsolateDestroy {
		t.Errorf("hypervisor without Pauser: isolation %s, want destroy", got)
	}
}

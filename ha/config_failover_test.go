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

// feeder is a LeaseWatchdog; with a timeout it reports one, as a Keeper does.
type feeder struct{ timeout time.Duration }

func (feeder) Feed(time.Time) {}

type timedFeeder struct{ feeder }

func (f timedFeeder) Timeout() time.Duration { return f.timeout }

// leaseExpiry sets FencePolicy AllowLeaseExpiry with consistent timings.
func leaseExpiry(c *Config) {
	c.FencePolicy, c.WatchdogTimeout, c.ReassignAfter = AllowLeaseExpiry, time.Second, c.Lease+time.Second
}

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
		{"lease expiry without a watchdog on a VM host", func(c *Config) {
			leaseExpiry(c)
			c.Hypervisor = pauseless{}
			c.IsolationResponse.Action = IsolateDestroy
		}, "Watchdog"},
		{"lease expiry with a watchdog", func(c *Config) {
			leaseExpiry(c)
			c.Hypervisor, c.Watchdog = pauseless{}, feeder{}
			c.IsolationResponse.Action = IsolateDestroy
		}, ""},
		{"lease expiry on a member without VMs needs no watchdog", func(c *Config) { leaseExpiry(c) }, ""},
		{"a watchdog slower than WatchdogTimeout", func(c *Config) {
			leaseExpiry(c)
			c.Hypervisor, c.Watchdog = pauseless{}, timedFeeder{feeder{2 * time.Second}}
			c.IsolationResponse.Action = IsolateDestroy
		}, "WatchdogTimeout"},
		{"a watchdog as fast as WatchdogTimeout", func(c *Config) {
			leaseExpiry(c)
			c.Hypervisor, c.Watchdog = pauseless{}, timedFeeder{feeder{time.Second}}
			c.IsolationResponse.Action = IsolateDestroy
		}, ""},
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

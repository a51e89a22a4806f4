package ha

import (
	"fmt"
	"time"

	"github.com/xenha/xenha/xenctl"
)

// validateFailover checks the failover settings that config.go's lease
// arithmetic does not: the retry schedule, the plug-ins a VM host needs, and
// that the isolation response can be carried out by this hypervisor.
func validateFailover(c *Config) error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	b := c.FenceRetry
	if b != (Backoff{}) {
		if b.Initial <= 0 {
			return bad("FenceRetry", "Initial %v must be positive: the leader retries a failed fence after it", b.Initial)
		}
		if b.Max < b.Initial {
			return bad("FenceRetry", "Max %v is shorter than Initial %v: raise Max", b.Max, b.Initial)
		}
		if b.Factor < 1 {
			return bad("FenceRetry", "Factor %v must be at least 1", b.Factor)
		}
	}
	if c.WatchdogTimeout < 0 {
		return bad("WatchdogTimeout", "negative (%v)", c.WatchdogTimeout)
	}
	if c.FencePolicy != AllowLeaseExpiry && c.WatchdogTimeout > 0 {
		return bad("FencePolicy", "WatchdogTimeout is set but FencePolicy is %q: set FencePolicy to AllowLeaseExpiry to count watchdog resets as fencing, or clear WatchdogTimeout", c.FencePolicy)
	}
	if c.FencePolicy == AllowLeaseExpiry && c.Role != RoleWitness && c.Hypervisor != nil {
		if c.Watchdog == nil {
			return bad("Watchdog", "nil under FencePolicy AllowLeaseExpiry on a host that runs VMs: the leader counts this host's silence past Lease + WatchdogTimeout as a fence only because a watchdog resets it by then; set Watchdog (a fence/watchdog Keeper) or use RequireFence")
		}
		if tw, ok := c.Watchdog.(interface{ Timeout() time.Duration }); ok && tw.Timeout() > c.WatchdogTimeout {
			return bad("WatchdogTimeout", "%v is shorter than the watchdog's own timeout %v: the leader would count the host as reset before its watchdog fires; raise WatchdogTimeout", c.WatchdogTimeout, tw.Timeout())
		}
	}
	for kind, be := range c.Storage {
		if kind == "" || be == nil {
			return bad("Storage", "entry %q has no kind or no backend: map each storage.Volume.Kind to its backend", kind)
		}
	}
	if c.Role == RoleWitness && c.Hypervisor != nil {
		return bad("Hypervisor", "set on a witness, which runs no VMs: remove it or use RoleVoter")
	}
	if c.IsolationResponse.Action == IsolatePause && c.Hypervisor != nil {
		if _, ok := c.Hypervisor.(xenctl.Pauser); !ok {
			return bad("IsolationResponse", "pause, but the hypervisor (%T) cannot pause domains: use IsolateDestroy or IsolateShutdown", c.Hypervisor)
		}
	}
	if c.Capacity != nil && (c.Capacity.MemoryKiB == 0 || c.Capacity.VCPUs <= 0) {
		return bad("Capacity", "%+v: give both memory and vCPUs, or leave Capacity nil to use what the hypervisor reports", *c.Capacity)
	}
	return nil
}

// isolationAction is the response in force: the configured one, or pause
// when the hypervisor can, else destroy.
func isolationAction(c *Config) IsolationAction {
	if a := c.IsolationResponse.Action; a != "" {
		return a
	}
	if _, ok := c.Hypervisor.(xenctl.Pauser); ok {
		return IsolatePause
	}
	return IsolateDestroy
}

// fenceTimings are the detector's thresholds from c.
func fenceTimings(c *Config) timings {
	t := timings{
		KeepAlive: c.KeepAlive, WarnTime: c.WarnTime, DeadTime: c.DeadTime, InitDead: c.InitDead,
		Lease: c.Lease, ReassignAfter: c.ReassignAfter,
	}
	if c.FencePolicy == AllowLeaseExpiry {
		t.WatchdogTimeout = c.WatchdogTimeout
	}
	return t
}

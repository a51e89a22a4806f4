package iscsi

import (
	"context"
	"fmt"
	"time"
)

// DefaultInitiatorName is the initiator IQN the probe logs in with unless
// told otherwise. Targets with ACLs by initiator name must allow it (or the
// name given with WithInitiatorName).
const DefaultInitiatorName = "iqn.2026-11.io.github.xenha:probe"

// DefaultProbeTimeout bounds a probe whose context has no deadline.
const DefaultProbeTimeout = 5 * time.Second

// ProbeOption configures Discover and ReadCapacity.
type ProbeOption func(*probeConfig)

type probeConfig struct {
	initiator string
	timeout   time.Duration
}

// WithInitiatorName sets the initiator IQN the probe presents.
func WithInitiatorName(iqn string) ProbeOption {
	return func(c *probeConfig) { c.initiator = iqn }
}

// WithProbeTimeout bounds a probe whose context has no earlier deadline.
func WithProbeTimeout(d time.Duration) ProbeOption {
	return func(c *probeConfig) { c.timeout = d }
}

func newProbeConfig(opts []ProbeOption) probeConfig {
	c := probeConfig{initiator: DefaultInitiatorName, timeout: DefaultProbeTimeout}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Target is one target a portal offers in a SendTargets answer.
type Target struct {
	Name string
	// Addresses are "host:port,tpgt" as the target reports them; empty means
	// the portal that was asked.
	Addresses []string
}

// Discover opens a discovery session on portal and returns the targets it
// offers (SendTargets=All). A portal that does not answer is
// storage.ErrUnreachable.
func Discover(ctx context.Context, portal string, opts ...ProbeOption) ([]Target, error) {
	cfg := newProbeConfig(opts)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := dial(ctx, portal, cfg.initiator)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.discover(ctx)
}

// discover is the discovery conversation on an open connection: login,
// SendTargets=All, logout.
func (c *conn) discover(ctx context.Context) ([]Target, error) {
	if err := c.login(ctx, "Discovery", ""); err != nil {
		return nil, err
	}
	kv, err := c.text(ctx, textKeys{{"SendTargets", "All"}})
	if err != nil {
		return nil, err
	}
	c.logout(ctx)
	return targetsFromText(kv)
}

// targetsFromText groups a SendTargets answer: each TargetName starts a
// target, and the TargetAddress keys after it belong to it.
func targetsFromText(kv textKeys) ([]Target, error) {
	var out []Target
	for _, p := range kv {
		switch p.Key {
		case "TargetName":
			out = append(out, Target{Name: p.Value})
		case "TargetAddress":
			if len(out) == 0 {
				return nil, fmt.Errorf("%w: TargetAddress %q before any TargetName", ErrMalformedPDU, p.Value)
			}
			out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, p.Value)
		}
	}
	return out, nil
}

// ReadCapacity logs in to target iqn on portal, asks logical unit lun for
// its capacity, and logs out. It proves the whole path a VM's disk takes:
// the portal answers, the target exists and admits this initiator, and the
// unit serves commands. A missing target or LUN is storage.ErrNotFound, a
// silent portal storage.ErrUnreachable, a unit reserved by another host
// storage.ErrInUse.
func ReadCapacity(ctx context.Context, portal, iqn string, lun int, opts ...ProbeOption) (Capacity, error) {
	cfg := newProbeConfig(opts)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := dial(ctx, portal, cfg.initiator)
	if err != nil {
		return Capacity{}, err
	}
	defer c.close()
	return c.probeCapacity(ctx, iqn, lun)
}

// probeCapacity is the probe's conversation on an open connection: login to
// iqn, READ CAPACITY of lun, logout.
func (c *conn) probeCapacity(ctx context.Context, iqn string, lun int) (Capacity, error) {
	if err := c.login(ctx, "Normal", iqn); err != nil {
		return Capacity{}, err
	}
	capa, err := c.readCapacity(ctx, lun)
	if err != nil {
		return Capacity{}, err
	}
	c.logout(ctx)
	return capa, nil
}

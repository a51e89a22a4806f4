package nfs

import (
	"context"
	"net"
)

// WithDialer makes the probe open its connections with dial, for tests that
// record a server's answers or replay them.
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) ProbeOption {
	return func(c *probeConfig) { c.dial = dial }
}

// WithFirstXID fixes the transaction IDs (first call: xid+1), so recorded
// answers match on replay.
func WithFirstXID(xid uint32) ProbeOption { return func(c *probeConfig) { c.xid = xid } }

package iscsi

import (
	"context"
	"net"
)

// recordedConn is a connection over nc for tests that record a real
// target's answers or replay them: a fixed session id (so recordings
// match) and no context watcher (the test owns nc's deadlines).
func recordedConn(nc net.Conn, isidLast byte) *conn {
	c := newConn(nc, "recorded", DefaultInitiatorName)
	c.stop = func() {}
	c.isid = [6]byte{0x80, 0x12, 0x34, isidLast, 0, 0}
	return c
}

// ProbeOverConn runs the probe's conversation (login, READ CAPACITY,
// logout) over nc.
func ProbeOverConn(ctx context.Context, nc net.Conn, iqn string, lun int) (Capacity, error) {
	return recordedConn(nc, 0x56).probeCapacity(ctx, iqn, lun)
}

// DiscoverOverConn runs a SendTargets discovery session over nc.
func DiscoverOverConn(ctx context.Context, nc net.Conn) ([]Target, error) {
	return recordedConn(nc, 0x57).discover(ctx)
}

package iscsi

import (
	"context"
	"net"
)

// ProbeOverConn runs the probe's conversation (login, READ CAPACITY,
// logout) over nc, for tests that record a real target's answers or replay
// them.
func ProbeOverConn(ctx context.Context, nc net.Conn, iqn string, lun int) (Capacity, error) {
	c := &conn{nc: nc, portal: "recorded", initiator: DefaultInitiatorName, nextITT: 1, cmdSN: 1,
		firstBurst: 65536, maxXmit: 8192, stop: func() bool { return true }}
	c.isid = [6]byte{0x80, 0x12, 0x34, 0x56, 0, 0}
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

// DiscoverOverConn runs a SendTargets discovery session over nc.
func DiscoverOverConn(ctx context.Context, nc net.Conn) ([]Target, error) {
	c := &conn{nc: nc, portal: "recorded", initiator: DefaultInitiatorName, nextITT: 1, cmdSN: 1,
		firstBurst: 65536, maxXmit: 8192, stop: func() bool { return true }}
	c.isid = [6]byte{0x80, 0x12, 0x34, 0x57, 0, 0}
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

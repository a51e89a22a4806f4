package ha

import (
	"context"
	"time"
)

// Hooks for the external tests (package ha_test), which can use hatest.

// RawApply appends data to the log as is (leader only), bypassing the
// leader's check of forwarded commands: it stands for a newer member's entry.
func RawApply(c *Cluster, data []byte) error {
	return c.raft.Apply(data, 5*time.Second).Error()
}

// ProposeDeleteVM proposes vm.delete under a chosen request ID, as a retry
// of a forwarded write would.
func ProposeDeleteVM(ctx context.Context, c *Cluster, name, requestID string) error {
	data, err := encodeCommand(&vmDelete{Name: name}, requestID, time.Now())
	if err != nil {
		return err
	}
	_, err = c.proposeData(ctx, "vm.delete", requestID, data)
	return err
}

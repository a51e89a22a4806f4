package ha

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
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

// WithSlowSync makes every write to the member's Raft log take the extra
// time delay returns first, as a disk whose fsync stalls now and then would.
func WithSlowSync(delay func() time.Duration) Option {
	return func(o *options) {
		o.wrapLogs = func(l raft.LogStore) raft.LogStore { return &slowLogs{LogStore: l, delay: delay} }
	}
}

type slowLogs struct {
	raft.LogStore
	delay func() time.Duration
}

func (s *slowLogs) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *slowLogs) StoreLogs(ls []*raft.Log) error {
	if d := s.delay(); d > 0 {
		time.Sleep(d)
	}
	return s.LogStore.StoreLogs(ls)
}

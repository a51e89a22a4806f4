package libvirt

import (
	"sync"

	"libvirt.org/go/libvirt"
)

// connRef counts, in Go, the users of one libvirt connection: the Hypervisor
// while the connection is current, and every call running on it, including
// calls abandoned when their context ended. The last user closes it.
//
// libvirt counts references too (virConnectRef), but the Go bindings' Close
// clears the shared *Connect's pointer when libvirt's count reaches zero, a
// write that other goroutines' reads of the same struct would race with.
// Counting here orders every use before the final Close.
type connRef struct {
	c    *libvirt.Connect
	mu   sync.Mutex
	refs int
}

func newConnRef(c *libvirt.Connect) *connRef { return &connRef{c: c, refs: 1} }

// acquire adds a user; it fails once the connection has been closed.
func (r *connRef) acquire() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == 0 {
		return false
	}
	r.refs++
	return true
}

// release drops a user and closes the connection after the last one.
// Closing a connection to a hung daemon can block, so callers that must not
// wait run it on a goroutine.
func (r *connRef) release() {
	r.mu.Lock()
	r.refs--
	last := r.refs == 0
	r.mu.Unlock()
	if last {
		closeRaw(r.c)
	}
}

// closeRaw closes a connection that has no other user.
func closeRaw(c *libvirt.Connect) {
	_ = c.UnregisterCloseCallback()
	_, _ = c.Close()
}

package drbd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xenha/xenha/storage"
)

// ErrNoGoodData: neither this node nor a connected peer has UpToDate data for
// the volume; promoting would serve stale or partial data.
var ErrNoGoodData = errors.New("drbd: no up-to-date data")

// ErrNoQuorum: the resource has lost quorum on this node.
var ErrNoQuorum = errors.New("drbd: no quorum")

// checkPromote decides from this node's view of the resource whether it may
// become Primary for volume vol. fenced names the peers the caller has
// fenced. The rules are in the package documentation.
func checkPromote(r Resource, vol int, fenced map[string]bool) error {
	dev := r.Device(vol)
	if dev == nil {
		return fmt.Errorf("resource %s has no volume %d on this node: %w", r.Name, vol, storage.ErrNotFound)
	}
	if err := splitBrain(r); err != nil {
		return err
	}
	for _, c := range r.Connections {
		if c.PeerRole == "Primary" {
			return fmt.Errorf("peer %s is Primary for %s (connection %s); demote it, or fence it and wait until this node sees it gone: %w",
				c.Name, r.Name, orUnknown(c.State), storage.ErrInUse)
		}
	}
	if dev.Quorum != nil && !*dev.Quorum {
		return fmt.Errorf("resource %s volume %d has no quorum here; a node without quorum must not write: %w", r.Name, vol, ErrNoQuorum)
	}
	goodPeer := false
	for _, c := range r.Connections {
		pd := c.peerDevice(vol)
		if c.State == "Connected" {
			if pd != nil && pd.PeerDisk == "UpToDate" {
				goodPeer = true
			}
			continue // connected and not Primary: a Secondary that DRBD keeps in check
		}
		if fenced[c.Name] || (pd != nil && pd.PeerDisk == "Outdated") {
			continue
		}
		return fmt.Errorf("peer %s of %s is %s, its role unknown, and it is neither Outdated nor fenced; fence it and promote with fenced=%s: %w",
			c.Name, r.Name, orUnknown(c.State), c.Name, storage.ErrInUse)
	}
	switch dev.Disk {
	case "UpToDate":
	case "Diskless":
		if !goodPeer {
			return fmt.Errorf("resource %s volume %d is diskless here and no connected peer is UpToDate: %w", r.Name, vol, ErrNoGoodData)
		}
	default:
		return fmt.Errorf("resource %s volume %d is %s here; promote only an UpToDate replica (wait for the resync, or choose the host that has the data): %w",
			r.Name, vol, orUnknown(dev.Disk), ErrNoGoodData)
	}
	return nil
}

// splitBrain reports a split brain seen on any connection.
func splitBrain(r Resource) error {
	var peers []string
	for _, c := range r.Connections {
		if c.SplitBrain {
			peers = append(peers, c.Name)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	return fmt.Errorf("resource %s split brain with %s: an operator must choose the survivor (drbdadm connect --discard-my-data on the victim); xenha never chooses: %w",
		r.Name, strings.Join(peers, ", "), storage.ErrSplitBrain)
}

func (c *Connection) peerDevice(vol int) *PeerDevice {
	for i := range c.PeerDevices {
		if c.PeerDevices[i].Volume == vol {
			return &c.PeerDevices[i]
		}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "in an unknown state"
	}
	return s
}

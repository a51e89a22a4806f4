package storage

import (
	"context"
	"errors"
	"fmt"
)

// Errors that callers branch on.
var (
	// ErrStaleGeneration: a newer generation of the volume has been attached
	// somewhere; the caller is an old writer and must not write.
	ErrStaleGeneration = errors.New("storage: stale volume generation")
	// ErrInUse: another host holds the volume at the same or a newer generation.
	ErrInUse = errors.New("storage: volume in use by another host")
	// ErrUnreachable: the storage server did not answer in time.
	ErrUnreachable = errors.New("storage: storage unreachable")
	// ErrNotFound: the server answered and has no such export, target or resource.
	ErrNotFound = errors.New("storage: volume not found")
	// ErrInvalidVolume: the volume's parameters are malformed or incomplete.
	ErrInvalidVolume = errors.New("storage: invalid volume parameters")
	// ErrSplitBrain: replicas diverged; an operator must choose. Never resolved
	// automatically.
	ErrSplitBrain = errors.New("storage: split brain")
)

// Volume is one VM disk as the cluster records it.
type Volume struct {
	ID string
	// Kind names the backend: "iscsi", "nfs", "nbd", "drbd", or an embedder's own.
	Kind string
	// Params are the backend's parameters (portal, IQN, LUN; server and export;
	// DRBD resource), documented by each backend. No secrets.
	Params map[string]string
	// Generation is the fencing token; see the package documentation.
	Generation uint64
}

// SourceType says how a Source reaches the disk.
type SourceType string

// Source types, as in libvirt's <disk type=...>.
const (
	SourceBlock   SourceType = "block"
	SourceFile    SourceType = "file"
	SourceNetwork SourceType = "network"
)

// Source is where the domain finds a disk, ready for libvirt's <disk> element.
type Source struct {
	Type SourceType
	// Path is the host device or file, for SourceBlock and SourceFile.
	Path string
	// Protocol ("iscsi", "nbd", "nfs"), Name (the target/LUN, export or path)
	// and Hosts describe a SourceNetwork disk.
	Protocol string
	Name     string
	Hosts    []HostPort
	ReadOnly bool
}

// HostPort is one server of a network disk.
type HostPort struct {
	Host string
	Port int
}

func (s Source) String() string {
	if s.Type == SourceNetwork {
		return fmt.Sprintf("%s://%v/%s", s.Protocol, s.Hosts, s.Name)
	}
	return fmt.Sprintf("%s:%s", s.Type, s.Path)
}

// Backend attaches volumes of one kind on its own host.
type Backend interface {
	// Attach makes vol usable on this host for vol.Generation and returns its
	// source. Attaching an attached volume again returns the same source.
	Attach(ctx context.Context, vol Volume) (Source, error)
	// Detach releases vol on this host. Detaching a detached volume is not an
	// error.
	Detach(ctx context.Context, vol Volume) error
	// Health probes the storage behind vol without attaching it.
	Health(ctx context.Context, vol Volume) error
}

// Promoter is implemented by role-based backends (DRBD): Promote makes this
// host's replica the writable primary, Demote gives that up. Promote refuses
// while a peer is primary.
type Promoter interface {
	Promote(ctx context.Context, vol Volume) error
	Demote(ctx context.Context, vol Volume) error
}

// Error is a failed storage operation, naming the volume, the step and the host.
type Error struct {
	Volume string
	Host   string
	Op     string // "attach", "login", "mount", "promote", "probe", ...
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("storage: %s volume %s on %s: %v", e.Op, e.Volume, e.Host, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

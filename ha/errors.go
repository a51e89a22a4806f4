package ha

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on. Errors returned by this package wrap one
// of these (test with errors.Is) and say which host or VM was involved and what
// to do about it.
var (
	// ErrNotLeader means the call needs the leader and this member is not it.
	// Writes and consistent reads forward to the leader themselves; only
	// leader-only operations return it.
	ErrNotLeader = errors.New("ha: this member is not the leader")
	// ErrNoLeader means no leader could be reached before the context ended:
	// the cluster has no quorum, or this member is cut off from it.
	ErrNoLeader = errors.New("ha: no leader reachable")
	// ErrIndeterminate means a write may or may not have been committed (the
	// leader was lost, or the deadline passed, after it was sent). It is never
	// a failure: read the state, or retry with the same request ID, which is
	// applied at most once.
	ErrIndeterminate = errors.New("ha: outcome unknown")
	// ErrClosed means the Cluster was closed.
	ErrClosed = errors.New("ha: cluster closed")
	// ErrAlreadyBootstrapped means the data directory already holds cluster
	// state; a restarted member rejoins from it and must not bootstrap or join.
	ErrAlreadyBootstrapped = errors.New("ha: member already has cluster state")
	// ErrInvalidConfig is wrapped by every *ConfigError.
	ErrInvalidConfig = errors.New("ha: invalid config")
	// ErrBadToken means a join presented the wrong join token.
	ErrBadToken = errors.New("ha: join token refused")
	// ErrWrongCluster means the peer belongs to another cluster ID.
	ErrWrongCluster = errors.New("ha: peer belongs to another cluster")
	// ErrBadCertificate means a peer's certificate is not signed by the
	// cluster CA or does not name the member ID it claims.
	ErrBadCertificate = errors.New("ha: peer certificate refused")
	// ErrIDInUse means a member tried to join under an ID the cluster already
	// knows from another incarnation (its data directory was lost or wiped).
	ErrIDInUse = errors.New("ha: member ID already in use")
	// ErrQuorumAtRisk means a membership change was refused because it would
	// leave the remaining voters unable to form a quorum.
	ErrQuorumAtRisk = errors.New("ha: change would lose quorum")
	// ErrUnknownCommand means a log entry carries a command kind or envelope
	// version this build does not know.
	ErrUnknownCommand = errors.New("ha: unknown command")
	// ErrHalted means this member stopped applying the log because it met an
	// entry it cannot apply (see the unknown-command policy in doc.go); its
	// state is frozen at the last entry it understood.
	ErrHalted = errors.New("ha: member halted applying the log")
	// ErrNotFound means a host, VM or volume does not exist.
	ErrNotFound = errors.New("ha: not found")
	// ErrExists means a host, VM or volume already exists.
	ErrExists = errors.New("ha: already exists")
	// ErrRefused is wrapped by refusals of commands by the state machine
	// (state unchanged) that have no more specific sentinel.
	ErrRefused = errors.New("ha: command refused")
)

// ConfigError names the Config field to change and why.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ha: invalid config: %s: %s", e.Field, e.Msg)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// UnknownCommandError details an entry this member could not apply.
type UnknownCommandError struct {
	Index   uint64 // log index of the entry
	Kind    string // command kind, if the envelope could be read
	Version int    // envelope version, if it could be read
	Err     error  // decoding error, if any
}

func (e *UnknownCommandError) Error() string {
	msg := fmt.Sprintf("ha: log entry %d: cannot apply command kind %q (envelope v%d; this build knows v%d)",
		e.Index, e.Kind, e.Version, envelopeVersion)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	registryMu.RLock()
	_, known := registry[e.Kind]
	registryMu.RUnlock()
	if e.Version > envelopeVersion || (e.Version == envelopeVersion && !known && e.Kind != "") {
		return msg + "; upgrade this member and restart it (it replays the log)"
	}
	// A kind and version this build knows, or no envelope at all: the
	// entry is malformed, and no upgrade reads it.
	return msg + "; the entry is malformed (no build can apply it): report it, and restore the members from a backup taken before it"
}

// Unwrap returns ErrUnknownCommand.
func (e *UnknownCommandError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrUnknownCommand, e.Err}
	}
	return []error{ErrUnknownCommand}
}

// RemoteError is an error reported by another member over the cluster RPC.
// It wraps the sentinel the remote side reported, so errors.Is works across
// members.
type RemoteError struct {
	Peer string // address of the member that answered
	Msg  string
	err  error // sentinel, if recognised
}

func (e *RemoteError) Error() string { return fmt.Sprintf("%s (from %s)", e.Msg, e.Peer) }

// Unwrap returns the sentinel the remote side reported, if any.
func (e *RemoteError) Unwrap() error { return e.err }

// wireSentinels are the sentinels that keep their identity across the RPC.
var wireSentinels = []error{
	ErrNotLeader, ErrNoLeader, ErrIndeterminate, ErrClosed, ErrAlreadyBootstrapped,
	ErrInvalidConfig, ErrBadToken, ErrWrongCluster, ErrBadCertificate, ErrIDInUse,
	ErrQuorumAtRisk, ErrUnknownCommand, ErrHalted, ErrNotFound, ErrExists, ErrRefused,
	ErrNotAuthorized, // appended: codes are positions, and older members know the ones before
}

// errCode is the index of err's sentinel in wireSentinels plus one, or 0.
func errCode(err error) int {
	for i, s := range wireSentinels {
		if errors.Is(err, s) {
			return i + 1
		}
	}
	return 0
}

// errFromWire rebuilds a remote error. It never returns nil: a peer that
// refuses without saying why is still refusing.
func errFromWire(peer string, code int, msg string) error {
	if msg == "" {
		msg = "refused without a reason"
	}
	e := &RemoteError{Peer: peer, Msg: msg}
	if code > 0 && code <= len(wireSentinels) {
		e.err = wireSentinels[code-1]
	}
	return e
}

package fence

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors that callers branch on.
var (
	// ErrUnknownHost: this fencer has no configuration for the host.
	ErrUnknownHost = errors.New("fence: no fencing configured for host")
	// ErrUnreachable: the fencing device did not answer. The host may be on.
	ErrUnreachable = errors.New("fence: fencing device unreachable")
	// ErrNotOff: the device answered, but the host could not be confirmed off.
	ErrNotOff = errors.New("fence: host not confirmed off")
	// ErrNotSupported: the method cannot do this (for example Unfence on a
	// poison pill that the victim must clear itself).
	ErrNotSupported = errors.New("fence: not supported by this method")
)

// Proof says that a host was off at Time, by Method, with Evidence a person can
// check (the BMC's answer, the agent's output, the slot written), and Kind says
// how strong that is.
type Proof struct {
	Host     string
	Method   string // "ipmi", "agent:fence_ipmilan", "sbd", "watchdog", "libvirt", ...
	Evidence string
	Time     time.Time
	// Kind is what the proof proves. Its zero value, ProofUnverified, is the
	// safe default for a fencer that does not say.
	Kind ProofKind
}

// ProofKind is what a proof proves, which decides how long a cluster must
// still wait before it restarts the host's VMs elsewhere.
type ProofKind int

// Proof kinds, weakest first.
const (
	// ProofUnverified: the fencer acted but read nothing back that shows
	// the host off (a transient domain that vanished, an operator's word).
	// It proves nothing on its own: the host's lease must still run out.
	ProofUnverified ProofKind = iota
	// ProofSelfFence: the host is trusted to kill itself (a poison pill it
	// must read, a watchdog it must stop feeding). That holds only once its
	// lease and its watchdog time have run out.
	ProofSelfFence
	// ProofVerifiedOff: the device read the host's power (or domain) back
	// as off after acting: a BMC's chassis status, a fence agent's
	// status=off, a destroyed domain read back as shut off. A host with no
	// power runs nothing, so its VMs may be restarted at once.
	ProofVerifiedOff
)

func (k ProofKind) String() string {
	switch k {
	case ProofSelfFence:
		return "self-fence"
	case ProofVerifiedOff:
		return "verified-off"
	}
	return "unverified"
}

// ParseProofKind reads a ProofKind's String form; anything else is an error.
func ParseProofKind(s string) (ProofKind, error) {
	for _, k := range []ProofKind{ProofUnverified, ProofSelfFence, ProofVerifiedOff} {
		if s == k.String() {
			return k, nil
		}
	}
	return ProofUnverified, fmt.Errorf("fence: proof kind %q: want unverified, self-fence or verified-off", s)
}

func (p Proof) String() string {
	return fmt.Sprintf("%s fenced by %s at %s: %s", p.Host, p.Method, p.Time.Format(time.RFC3339Nano), p.Evidence)
}

// Fencer fences hosts. Fence returns a proof only when host is verifiably off;
// otherwise it returns an error (usually a *Error) and no proof. Fence must be
// safe to call again for a host that is already off, and must return when ctx
// ends.
type Fencer interface {
	Fence(ctx context.Context, host string) (Proof, error)
}

// Power is a host's power state as a fencing device reports it.
type Power int

// Power states.
const (
	PowerUnknown Power = iota
	PowerOn
	PowerOff
)

func (p Power) String() string {
	switch p {
	case PowerOn:
		return "on"
	case PowerOff:
		return "off"
	}
	return "unknown"
}

// StatusReader is implemented by fencers that can read a host's power state.
type StatusReader interface {
	Status(ctx context.Context, host string) (Power, error)
}

// Unfencer is implemented by fencers that can let a fenced host back: power it
// on, or clear its poison pill.
type Unfencer interface {
	Unfence(ctx context.Context, host string) error
}

// Error is a failed fencing step, naming the host, the method and the step.
// It never contains a password.
type Error struct {
	Host   string
	Method string
	Step   string // "connect", "off", "verify", "status", "write pill", ...
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("fence %s with %s: %s: %v", e.Host, e.Method, e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

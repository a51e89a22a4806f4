package pool

import (
	"fmt"
	"strings"
	"time"
)

// ActionKind names what an action asks for.
type ActionKind string

// Action kinds.
const (
	ActSuspect   ActionKind = "suspect"  // mark Host suspect at Epoch: fencing starts
	ActFence     ActionKind = "fence"    // run fencing round Round against Host at Epoch
	ActSelfFence ActionKind = "proof"    // commit a self-fence proof for Host at Epoch
	ActEscalate  ActionKind = "escalate" // ask an operator to power Host off and acknowledge it
	ActAssign    ActionKind = "start"    // give VM to Host (its agent starts it)
	ActRestart   ActionKind = "restart"  // grant VM a local restart on Host
	ActRelease   ActionKind = "stop"     // take VM off healthy Host (it stops it there); To is its target, if known
	ActMigrate   ActionKind = "migrate"  // live-migrate VM from Host to To
	ActPending   ActionKind = "pending"  // VM waits; Reason says why
	ActWait      ActionKind = "wait"     // nothing to do for Host or VM before Until (or an event, if zero)
	ActClose     ActionKind = "close"    // close the incident of Host at Epoch
)

// Action is one step of a plan.
type Action struct {
	Kind   ActionKind
	Host   string
	VM     string
	To     string
	Epoch  uint64
	Round  int
	Until  time.Time
	Reason string
}

// String renders the action with times relative to base, for transcripts.
func (a Action) String() string { return a.Format(time.Time{}) }

// Format renders the action; times are shown relative to base unless base
// is zero.
func (a Action) Format(base time.Time) string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	if a.VM != "" {
		b.WriteString(" " + a.VM)
	}
	switch a.Kind {
	case ActSuspect, ActSelfFence, ActClose:
		fmt.Fprintf(&b, " %s@%d", a.Host, a.Epoch)
	case ActFence:
		fmt.Fprintf(&b, " %s@%d round=%d", a.Host, a.Epoch, a.Round)
	case ActAssign, ActRestart:
		b.WriteString(" on " + a.Host)
	case ActRelease:
		b.WriteString(" on " + a.Host)
		if a.To != "" {
			b.WriteString(" for " + a.To)
		}
	case ActMigrate:
		b.WriteString(" " + a.Host + "→" + a.To)
	case ActEscalate:
		b.WriteString(" " + a.Host)
	case ActWait:
		if a.Host != "" && a.VM == "" {
			b.WriteString(" " + a.Host)
		}
		if !a.Until.IsZero() {
			if base.IsZero() {
				b.WriteString(" until " + a.Until.Format(time.RFC3339Nano))
			} else {
				b.WriteString(" until +" + a.Until.Sub(base).String())
			}
		}
	}
	if a.Reason != "" {
		b.WriteString(": " + a.Reason)
	}
	return b.String()
}

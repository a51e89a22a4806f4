package libvirt

import (
	"fmt"

	"github.com/xenha/xenha/xenctl"
)

// This file maps libvirt's domain states, state reasons and lifecycle events
// to xenctl's. It uses libvirt's numeric values (part of libvirt's stable ABI,
// checked against the bindings' constants in state_test.go) so that it stays
// pure Go and testable without a daemon.

// libvirt's virDomainState values.
const (
	vNoState     = 0
	vRunning     = 1
	vBlocked     = 2
	vPaused      = 3
	vShutdown    = 4
	vShutoff     = 5
	vCrashed     = 6
	vPMSuspended = 7
)

// Reasons per state, in libvirt's numbering, worded as virsh prints them.
var reasonNames = map[int][]string{
	vNoState: {"unknown"},
	vRunning: {"unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
		"migration canceled", "save canceled", "wakeup", "crashed", "post-copy", "post-copy failed"},
	vBlocked: {"unknown"},
	vPaused: {"unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
		"from snapshot", "shutting down", "creating snapshot", "crashed", "starting up",
		"post-copy", "post-copy failed", "api error"},
	vShutdown:    {"unknown", "user"},
	vShutoff:     {"unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"},
	vCrashed:     {"unknown", "panicked"},
	vPMSuspended: {"unknown"},
}

// mapState converts a libvirt state and reason.
func mapState(state, reason int) (xenctl.State, string) {
	var s xenctl.State
	switch state {
	case vRunning, vBlocked:
		s = xenctl.StateRunning
	case vPaused:
		s = xenctl.StatePaused
	case vShutdown:
		s = xenctl.StateShuttingDown
	case vShutoff:
		s = xenctl.StateShutoff
	case vCrashed:
		s = xenctl.StateCrashed
	case vPMSuspended:
		s = xenctl.StatePMSuspended
	default:
		s = xenctl.StateUnknown
	}
	names := reasonNames[state]
	if reason >= 0 && reason < len(names) {
		return s, names[reason]
	}
	return s, fmt.Sprintf("reason %d", reason)
}

// libvirt's virDomainEventType values.
const (
	evDefined     = 0
	evUndefined   = 1
	evStarted     = 2
	evSuspended   = 3
	evResumed     = 4
	evStopped     = 5
	evShutdown    = 6
	evPMSuspended = 7
	evCrashed     = 8
)

var eventDetails = map[int][]string{
	evDefined:     {"added", "updated", "renamed", "from snapshot"},
	evUndefined:   {"removed", "renamed"},
	evStarted:     {"booted", "migrated", "restored", "from snapshot", "wakeup"},
	evSuspended:   {"paused", "migrated", "I/O error", "watchdog", "restored", "from snapshot", "api error", "post-copy", "post-copy failed"},
	evResumed:     {"unpaused", "migrated", "from snapshot", "post-copy", "post-copy failed"},
	evStopped:     {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot"},
	evShutdown:    {"finished", "guest", "host"},
	evPMSuspended: {"memory", "disk"},
	evCrashed:     {"panicked", "crashloaded"},
}

// definedAdded is the DEFINED detail for a new definition, which starts shut
// off.
const definedAdded = 0

// stoppedCrashed is the STOPPED detail for a guest that crashed and was
// destroyed by its on_crash action.
const stoppedCrashed = 2

// mapEvent converts a libvirt lifecycle event. ok is false for events xenha
// does not report: SHUTDOWN says the guest finished shutting down, and the
// STOPPED event that follows carries the news. known is false when the state
// after the event cannot be told from the event alone (a redefinition,
// UNDEFINED); the caller looks it up.
func mapEvent(event, detail int) (kind xenctl.EventKind, state xenctl.State, reason string, known, ok bool) {
	if names := eventDetails[event]; detail >= 0 && detail < len(names) {
		reason = names[detail]
	} else {
		reason = fmt.Sprintf("detail %d", detail)
	}
	switch event {
	case evDefined:
		if detail == definedAdded {
			return xenctl.EventDefined, xenctl.StateShutoff, reason, true, true
		}
		return xenctl.EventDefined, xenctl.StateUnknown, reason, false, true
	case evUndefined:
		return xenctl.EventUndefined, xenctl.StateUnknown, reason, false, true
	case evStarted:
		return xenctl.EventStarted, xenctl.StateRunning, reason, true, true
	case evSuspended:
		return xenctl.EventSuspended, xenctl.StatePaused, reason, true, true
	case evResumed:
		return xenctl.EventResumed, xenctl.StateRunning, reason, true, true
	case evStopped:
		if detail == stoppedCrashed {
			return xenctl.EventCrashed, xenctl.StateShutoff, reason, true, true
		}
		return xenctl.EventStopped, xenctl.StateShutoff, reason, true, true
	case evPMSuspended:
		return xenctl.EventSuspended, xenctl.StatePMSuspended, reason, true, true
	case evCrashed:
		return xenctl.EventCrashed, xenctl.StateCrashed, reason, true, true
	}
	return 0, xenctl.StateUnknown, reason, false, false
}

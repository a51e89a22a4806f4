package ha

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// An incident is the timeline of one host failure, from the last renewal the
// cluster applied to the moment the host's last VM runs again elsewhere. It
// lives in the replicated state, so a leader that takes over mid-incident
// carries on the same timeline, and every phase boundary is the commit time
// (proposer's clock) of the command that crossed it.

// Phase names, in the order a failover passes them.
const (
	PhaseDetect  = "detect"  // last renewal → host committed suspect
	PhaseFence   = "fence"   // suspect → fence proof committed
	PhaseProof   = "proof"   // fence proof → the VMs may move: at once for a verified power-off, after the lease wait otherwise
	PhasePlace   = "place"   // the VMs may move → assignments committed (includes the storage generation bump)
	PhaseStorage = "storage" // assignments → the targets attached/promoted the volumes
	PhaseStart   = "start"   // assignments → the last VM observed running on its new host
)

// maxIncidents bounds State.Incidents; the oldest closed ones go first.
const maxIncidents = 64

// maxIncidentAttempts bounds the fence attempts kept per incident.
const maxIncidentAttempts = 32

// openIncident returns the open incident for host at epoch, creating it
// (with a detect phase from lastSeen to at) when there is none.
func (s *State) openIncident(host string, epoch uint64, index uint64, lastSeen, at time.Time) *Incident {
	if inc := s.findIncident(host, epoch); inc != nil {
		return inc
	}
	if lastSeen.IsZero() || lastSeen.After(at) {
		lastSeen = at
	}
	inc := &Incident{
		ID:     fmt.Sprintf("%s-e%d-i%d", host, epoch, index),
		Host:   host,
		Epoch:  epoch,
		Opened: at,
		Phases: []Phase{{Name: PhaseDetect, Start: lastSeen, End: at}},
	}
	for name, vm := range s.VMs {
		if vm.Host == host && !vm.Stopped && vm.Policy.Restart != RestartOff {
			inc.VMs = append(inc.VMs, name)
		}
	}
	slices.Sort(inc.VMs)
	s.Incidents = append(s.Incidents, inc)
	s.trimIncidents()
	return inc
}

// findIncident returns the open incident for host at epoch, or nil.
func (s *State) findIncident(host string, epoch uint64) *Incident {
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		inc := s.Incidents[i]
		if inc.Host == host && inc.Epoch == epoch && inc.Closed.IsZero() {
			return inc
		}
	}
	return nil
}

// latestIncident returns the newest incident for host at epoch, open or
// closed, or nil.
func (s *State) latestIncident(host string, epoch uint64) *Incident {
	for i := len(s.Incidents) - 1; i >= 0; i-- {
		if inc := s.Incidents[i]; inc.Host == host && inc.Epoch == epoch {
			return inc
		}
	}
	return nil
}

// openIncidentsWith returns the open incidents that list vm.
func (s *State) openIncidentsWith(vm string) []*Incident {
	var out []*Incident
	for _, inc := range s.Incidents {
		if inc.Closed.IsZero() && slices.Contains(inc.VMs, vm) {
			out = append(out, inc)
		}
	}
	return out
}

func (s *State) trimIncidents() {
	for len(s.Incidents) > maxIncidents {
		drop := 0
		for i, inc := range s.Incidents {
			if !inc.Closed.IsZero() {
				drop = i
				break
			}
		}
		s.Incidents = slices.Delete(s.Incidents, drop, drop+1)
	}
}

// phase returns the named phase, or nil.
func (inc *Incident) phase(name string) *Phase {
	for i := range inc.Phases {
		if inc.Phases[i].Name == name {
			return &inc.Phases[i]
		}
	}
	return nil
}

// begin opens a phase at at, unless it was already opened.
func (inc *Incident) begin(name string, at time.Time) {
	if inc.phase(name) == nil {
		inc.Phases = append(inc.Phases, Phase{Name: name, Start: at})
	}
}

// end closes a phase at at, opening it first if needed. A phase that is
// already closed moves its end forward only (several VMs finish one phase).
func (inc *Incident) end(name string, at time.Time) {
	inc.begin(name, at)
	p := inc.phase(name)
	if p.End.IsZero() || at.After(p.End) {
		p.End = at
	}
}

// note appends a line to the incident's notes.
func (inc *Incident) note(format string, args ...any) {
	inc.Notes = append(inc.Notes, fmt.Sprintf(format, args...))
}

// close ends the incident and every phase still open.
func (inc *Incident) close(at time.Time) {
	for i := range inc.Phases {
		if inc.Phases[i].End.IsZero() {
			inc.Phases[i].End = at
		}
	}
	inc.Closed = at
}

// Duration is the incident's length from the last renewal to its close, or
// zero while open.
func (inc *Incident) Duration() time.Duration {
	if inc.Closed.IsZero() || len(inc.Phases) == 0 {
		return 0
	}
	return inc.Closed.Sub(inc.Phases[0].Start)
}

// Timeline renders the incident for people and golden files: the phases in
// order with their durations, the fence attempts, the notes. With
// exactTimes false, durations are left out, so that the text depends only on
// what happened and in which order.
func (inc *Incident) Timeline(exactTimes bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "incident host=%s epoch=%d vms=%s\n", inc.Host, inc.Epoch, strings.Join(inc.VMs, ","))
	for _, p := range inc.Phases {
		if exactTimes {
			fmt.Fprintf(&b, "  phase %-8s %v\n", p.Name, p.Duration())
		} else {
			state := "done"
			if p.End.IsZero() {
				state = "open"
			}
			fmt.Fprintf(&b, "  phase %-8s %s\n", p.Name, state)
		}
	}
	for _, n := range inc.Notes {
		fmt.Fprintf(&b, "  note %s\n", n)
	}
	if inc.Closed.IsZero() {
		b.WriteString("  open\n")
	} else if exactTimes {
		fmt.Fprintf(&b, "  closed after %v\n", inc.Duration())
	} else {
		b.WriteString("  closed\n")
	}
	return b.String()
}

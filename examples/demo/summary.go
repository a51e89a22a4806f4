package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/xenha/xenha/ha"
)

// Millis is a duration in milliseconds, as the summary reports it.
type Millis int64

// MillisOf rounds d to milliseconds.
func MillisOf(d time.Duration) Millis { return Millis(d.Milliseconds()) }

// Summary is what the demo shows at the end, and -json prints.
type Summary struct {
	OK        bool              `json:"ok"`
	Hosts     int               `json:"hosts"`
	VMs       int               `json:"vms"`
	Guard     string            `json:"guard"`
	Incidents []IncidentSummary `json:"incidents"`
	// Placement is where each VM runs at the end.
	Placement map[string]string `json:"placement"`
	// Lost are VMs with restart policy "restart" that run nowhere at the end.
	Lost []string `json:"lost,omitempty"`
	// DoubleRuns are moments a VM executed on two hosts (never, we hope).
	DoubleRuns []DoubleRun `json:"double_runs,omitempty"`
	// Failures are steps of the script that did not complete.
	Failures []string `json:"failures,omitempty"`
	Elapsed  Millis   `json:"elapsed_ms"`
}

// IncidentSummary is one failover's timeline.
type IncidentSummary struct {
	Host   string        `json:"host"`
	Role   string        `json:"role"` // what the host was when its plug was pulled
	Epoch  uint64        `json:"epoch"`
	VMs    []string      `json:"vms"`
	Phases []PhaseMillis `json:"phases"`
	// Outage is from pulling the plug to every VM executing again, as the
	// hypervisors report it.
	Outage Millis `json:"outage_ms"`
	// Fence is how the host was proven off.
	Fence string `json:"fence,omitempty"`
}

// PhaseMillis is one phase of an incident.
type PhaseMillis struct {
	Name     string `json:"name"`
	Duration Millis `json:"ms"`
}

func incidentSummary(inc ha.Incident, role string, pulled, back time.Time) IncidentSummary {
	s := IncidentSummary{Host: inc.Host, Role: role, Epoch: inc.Epoch, VMs: slices.Clone(inc.VMs),
		Outage: MillisOf(back.Sub(pulled))}
	// The detect phase starts at the last renewal the cluster applied;
	// the demo knows better: the moment the plug was pulled.
	for _, ph := range inc.Phases {
		d := ph.Duration()
		if ph.Name == ha.PhaseDetect && ph.End.After(pulled) {
			d = ph.End.Sub(pulled)
		}
		s.Phases = append(s.Phases, PhaseMillis{Name: ph.Name, Duration: MillisOf(d)})
	}
	for _, a := range inc.Attempts {
		if a.Err == "" {
			s.Fence = fmt.Sprintf("%s in %d ms", a.Method, a.Duration.Milliseconds())
		}
	}
	return s
}

// phase returns the named phase, if the incident has it.
func (s IncidentSummary) phase(name string) (PhaseMillis, bool) {
	for _, p := range s.Phases {
		if p.Name == name {
			return p, true
		}
	}
	return PhaseMillis{}, false
}

// timeline names the phases one after the other, from the pull: detect
// (the pull to the host committed suspect), fence (to the proof committed),
// proof (the wait the proof demands: none for a verified power-off), place
// (to the assignments committed) and start (to the last VM observed running;
// the storage hand-over runs within it).
func (s IncidentSummary) timeline() string {
	var parts []string
	storage, hasStorage := s.phase(ha.PhaseStorage)
	for _, p := range s.Phases {
		switch p.Name {
		case ha.PhaseStorage:
			continue
		case ha.PhaseStart:
			if hasStorage {
				parts = append(parts, fmt.Sprintf("%s %d ms (storage %d ms of it)", p.Name, p.Duration, storage.Duration))
				continue
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d ms", p.Name, p.Duration))
	}
	return strings.Join(parts, " | ")
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nxenha demo: %d hosts, %d VMs, guard: %s\n", s.Hosts, s.VMs, s.Guard)
	for _, inc := range s.Incidents {
		fmt.Fprintf(w, "\nincident: %s (%s) pulled; %d VMs moved; outage %d ms\n", inc.Host, inc.Role, len(inc.VMs), inc.Outage)
		fmt.Fprintf(w, "  timeline: %s\n", inc.timeline())
		if inc.Fence != "" {
			fmt.Fprintf(w, "  fenced:   %s\n", inc.Fence)
		}
	}
	byHost := map[string][]string{}
	for vm, h := range s.Placement {
		byHost[h] = append(byHost[h], vm)
	}
	fmt.Fprintln(w, "\nfinal placement:")
	for _, h := range slices.Sorted(maps.Keys(byHost)) {
		vms := byHost[h]
		slices.Sort(vms)
		fmt.Fprintf(w, "  %-4s %s\n", h, strings.Join(vms, " "))
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
	if len(s.Lost) > 0 {
		fmt.Fprintf(w, "LOST: %s\n", strings.Join(s.Lost, " "))
	}
	for _, d := range s.DoubleRuns {
		fmt.Fprintf(w, "RAN TWICE: %s on %s at %d ms\n", d.VM, strings.Join(d.Hosts, "+"), d.At)
	}
	verdict := "every VM runs exactly once, its network open on that host only; none ran twice"
	if !s.OK {
		verdict = "NOT OK"
	}
	fmt.Fprintf(w, "\n%s (%.1f s)\n", verdict, float64(s.Elapsed)/1000)
}

// WriteJSON prints the summary as one JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

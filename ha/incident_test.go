package ha

import (
	"strings"
	"testing"
	"time"
)

func TestIncidentPhases(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := &State{VMs: map[string]*VM{
		"a": {Name: "a", Host: "h1", Policy: Policy{Restart: RestartAlways}},
		"b": {Name: "b", Host: "h1", Policy: Policy{Restart: RestartOff}},
		"c": {Name: "c", Host: "h2", Policy: Policy{Restart: RestartAlways}},
	}}
	inc := s.openIncident("h1", 3, 10, at(0), at(450))
	if again := s.openIncident("h1", 3, 11, at(0), at(500)); again != inc {
		t.Fatal("a second suspect for the same host and epoch opened a second incident")
	}
	if len(inc.VMs) != 1 || inc.VMs[0] != "a" {
		t.Fatalf("incident VMs = %v, want [a] (b has restart off, c is elsewhere)", inc.VMs)
	}
	inc.end(PhaseFence, at(520))
	inc.end(PhasePlace, at(900))
	inc.end(PhaseStorage, at(930))
	inc.end(PhaseStorage, at(920)) // an earlier report never moves the end back
	inc.end(PhaseStart, at(1000))
	if inc.Duration() != 0 {
		t.Fatal("an open incident has a duration")
	}
	inc.close(at(1000))
	want := map[string]time.Duration{
		PhaseDetect: 450 * time.Millisecond, PhaseFence: 0, PhasePlace: 0,
		PhaseStorage: 0, PhaseStart: 0,
	}
	for name, d := range want {
		p := inc.phase(name)
		if p == nil {
			t.Fatalf("phase %s missing", name)
		}
		if d != 0 && p.Duration() != d {
			t.Errorf("phase %s lasted %v, want %v", name, p.Duration(), d)
		}
	}
	if got := inc.phase(PhaseStorage).End; !got.Equal(at(930)) {
		t.Errorf("storage phase ends at %v, want the latest report", got)
	}
	if inc.Duration() != time.Second {
		t.Errorf("incident lasted %v, want 1s", inc.Duration())
	}
	if s.findIncident("h1", 3) != nil {
		t.Error("closed incident still found as open")
	}
	tl := inc.Timeline(false)
	for _, w := range []string{"phase detect", "phase fence", "phase place", "phase storage", "phase start", "closed"} {
		if !strings.Contains(tl, w) {
			t.Errorf("timeline lacks %q:\n%s", w, tl)
		}
	}
}

func TestIncidentsBounded(t *testing.T) {
	s := &State{VMs: map[string]*VM{}}
	t0 := time.Unix(1_800_000_000, 0)
	keep := s.openIncident("open-one", 1, 1, t0, t0)
	for i := range maxIncidents + 10 {
		inc := s.openIncident("h", uint64(i+2), uint64(i+2), t0, t0)
		inc.close(t0)
	}
	if len(s.Incidents) != maxIncidents {
		t.Fatalf("%d incidents kept, want %d", len(s.Incidents), maxIncidents)
	}
	if s.findIncident("open-one", 1) != keep {
		t.Fatal("an open incident was dropped to make room")
	}
}

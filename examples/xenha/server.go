package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/xenha/xenha/ha"
)

// Pool is what GET /v1/pool returns: who leads, who answered, and the
// Raft membership as the answering member knows it.
type Pool struct {
	ClusterID string      `json:"cluster_id"`
	Member    string      `json:"member"` // the member that answered
	Leader    string      `json:"leader"`
	Index     uint64      `json:"index"`
	Members   []ha.Member `json:"members"`
	Hosts     int         `json:"hosts"`
	VMs       int         `json:"vms"`
	Open      int         `json:"open_incidents"`
}

// APIError is the body of every error answer.
type APIError struct {
	Error string `json:"error"`
	// Code is what a client branches on: "not_found", "refused",
	// "indeterminate", "unavailable", "bad_request", "forbidden",
	// "unsupported".
	Code string `json:"code"`
}

// maxBody bounds request bodies: a VM's domain XML is a few KiB.
const maxBody = 1 << 20

// eventLog keeps the member's recent events for GET /v1/events and feeds
// followers.
type eventLog struct {
	mu     sync.Mutex
	recent []ha.Event
	subs   map[chan ha.Event]struct{}
}

const eventLogSize = 256

func (l *eventLog) add(ev ha.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent = append(l.recent, ev)
	if len(l.recent) > eventLogSize {
		l.recent = l.recent[len(l.recent)-eventLogSize:]
	}
	for ch := range l.subs {
		select {
		case ch <- ev:
		default: // a slow follower loses events rather than stalling the member
		}
	}
}

func (l *eventLog) follow() (chan ha.Event, []ha.Event, func()) {
	ch := make(chan ha.Event, 64)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.subs == nil {
		l.subs = map[chan ha.Event]struct{}{}
	}
	l.subs[ch] = struct{}{}
	return ch, append([]ha.Event(nil), l.recent...), func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

// api serves one member's HTTP API.
type api struct {
	c      *ha.Cluster
	events *eventLog
	// writes is false on the plain status listener: it serves reads only.
	writes bool
}

// feed copies the member's events into the log until ctx ends.
func (a *api) feed(ctx context.Context) {
	for ev := range a.c.Subscribe(ctx) {
		a.events.add(ev)
	}
}

func (a *api) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/pool", a.pool)
	mux.HandleFunc("GET /v1/hosts", a.hosts)
	mux.HandleFunc("GET /v1/vms", a.vms)
	mux.HandleFunc("GET /v1/vms/{name}", a.vm)
	mux.HandleFunc("GET /v1/volumes", a.volumes)
	mux.HandleFunc("GET /v1/incidents", a.incidents)
	mux.HandleFunc("GET /v1/fences", a.fences)
	mux.HandleFunc("GET /v1/events", a.eventsHandler)
	write := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, a.admin(h)) }
	write("POST /v1/hosts/{host}/fence", a.ackFence)
	write("POST /v1/hosts/{host}/maintenance", a.maintenance)
	write("DELETE /v1/hosts/{host}", a.removeHost)
	write("POST /v1/vms/{name}/migrate", a.migrate)
	write("PUT /v1/vms/{name}", a.putVM)
	write("DELETE /v1/vms/{name}", a.deleteVM)
	write("PUT /v1/volumes/{id}", a.putVolume)
	write("DELETE /v1/volumes/{id}", a.deleteVolume)
	// Operations the pool's library does not offer yet: the routes exist so
	// that the CLI can say so and a newer pool can fill them in.
	for _, p := range unsupported {
		mux.HandleFunc(p, a.admin(notSupported))
	}
}

// unsupported are the routes of operations this pool version lacks.
var unsupported = []string{
	"POST /v1/disarm", "POST /v1/arm", "POST /v1/what-if", "GET /v1/vms/{name}/why", "POST /v1/recover",
}

func notSupported(w http.ResponseWriter, r *http.Request) {
	fail(w, http.StatusNotImplemented, "unsupported", fmt.Sprintf("%s %s: not supported by this pool version", r.Method, r.URL.Path))
}

// admin lets only operator certificates through to a write, on the TLS
// listener only.
func (a *api) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.writes {
			fail(w, http.StatusForbidden, "forbidden", "this listener is read-only: send writes to the member's mutual-TLS API address")
			return
		}
		if _, ok := operatorOf(r); !ok {
			fail(w, http.StatusForbidden, "forbidden", "writes need an operator certificate (xenha ca issue operator NAME)")
			return
		}
		h(w, r)
	}
}

// operatorOf is the operator name of the request's client certificate.
func operatorOf(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if !IsOperator(leaf) {
		return "", false
	}
	return leaf.Subject.CommonName, true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(APIError{Error: msg, Code: code})
}

// failErr answers with the status the library's error calls for.
func failErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ha.ErrNotFound):
		fail(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ha.ErrIndeterminate):
		fail(w, http.StatusServiceUnavailable, "indeterminate", err.Error())
	case errors.Is(err, ha.ErrNoLeader), errors.Is(err, ha.ErrClosed), errors.Is(err, ha.ErrHalted),
		errors.Is(err, context.DeadlineExceeded):
		fail(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, ha.ErrInvalidConfig):
		fail(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		// ErrRefused, ErrHostAlive, ErrExists, ErrQuorumAtRisk and the
		// state machine's other refusals: the pool said no.
		fail(w, http.StatusConflict, "refused", err.Error())
	}
}

// state reads the state: consistent unless ?stale=1, which a member cut off
// from the leader can still answer.
func (a *api) state(w http.ResponseWriter, r *http.Request) (*ha.State, bool) {
	mode := ha.Consistent
	if stale, _ := strconv.ParseBool(r.URL.Query().Get("stale")); stale {
		mode = ha.Stale
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	s, err := a.c.State(ctx, mode)
	if err != nil {
		failErr(w, err)
		return nil, false
	}
	return s, true
}

func (a *api) pool(w http.ResponseWriter, r *http.Request) {
	s, ok := a.state(w, r)
	if !ok {
		return
	}
	members, _ := a.c.Members()
	leader, _ := a.c.Leader()
	open := 0
	for _, inc := range s.Incidents {
		if inc.Closed.IsZero() {
			open++
		}
	}
	reply(w, Pool{ClusterID: s.ClusterID, Member: a.c.ID(), Leader: leader, Index: s.Index, Members: members,
		Hosts: len(s.Hosts), VMs: len(s.VMs), Open: open})
}

// sorted returns m's values in key order.
func sorted[T any](m map[string]*T) []*T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*T, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// hosts lists the pool's hosts; hosts that left or were removed only with
// ?all=1 (the replicated state keeps them, for their epochs).
func (a *api) hosts(w http.ResponseWriter, r *http.Request) {
	s, ok := a.state(w, r)
	if !ok {
		return
	}
	all, _ := strconv.ParseBool(r.URL.Query().Get("all"))
	out := make([]*ha.Host, 0, len(s.Hosts))
	for _, h := range sorted(s.Hosts) {
		if all || h.State != ha.HostLeft {
			out = append(out, h)
		}
	}
	reply(w, out)
}

func (a *api) vms(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.state(w, r); ok {
		reply(w, sorted(s.VMs))
	}
}

func (a *api) vm(w http.ResponseWriter, r *http.Request) {
	s, ok := a.state(w, r)
	if !ok {
		return
	}
	v := s.VMs[r.PathValue("name")]
	if v == nil {
		fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("VM %q is not in the pool", r.PathValue("name")))
		return
	}
	reply(w, v)
}

func (a *api) volumes(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.state(w, r); ok {
		reply(w, sorted(s.Volumes))
	}
}

func (a *api) incidents(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.state(w, r); ok {
		reply(w, s.Incidents)
	}
}

func (a *api) fences(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.state(w, r); ok {
		reply(w, s.Fences)
	}
}

// eventsHandler answers with the member's recent events, or, with
// ?follow=1, streams the events from now on as server-sent events until the
// client leaves.
func (a *api) eventsHandler(w http.ResponseWriter, r *http.Request) {
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	ch, recent, stop := a.events.follow()
	defer stop()
	if !follow {
		reply(w, recent)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, "unavailable", "streaming is not supported on this connection")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	send := func(ev ha.Event) {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, b)
	}
	// Like tail -f with no back-log: GET without follow gives the past.
	fmt.Fprint(w, ": following\n\n")
	flusher.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			send(ev)
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		}
		flusher.Flush()
	}
}

// decode reads a JSON body strictly into v.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return false
	}
	return true
}

// write runs one library call with a bound and answers {"ok": true}.
func (a *api) write(w http.ResponseWriter, r *http.Request, call func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := call(ctx); err != nil {
		failErr(w, err)
		return
	}
	reply(w, map[string]bool{"ok": true})
}

// ackFence records the operator's word that the host is powered off: the
// library's AckFence, the one way it offers to fence from outside.
func (a *api) ackFence(w http.ResponseWriter, r *http.Request) {
	op, _ := operatorOf(r)
	a.write(w, r, func(ctx context.Context) error { return a.c.AckFence(ctx, r.PathValue("host"), op) })
}

// MaintenanceRequest is the body of POST /v1/hosts/{host}/maintenance.
type MaintenanceRequest struct {
	On bool `json:"on"`
}

func (a *api) maintenance(w http.ResponseWriter, r *http.Request) {
	var req MaintenanceRequest
	if decode(w, r, &req) {
		a.write(w, r, func(ctx context.Context) error { return a.c.Maintenance(ctx, r.PathValue("host"), req.On) })
	}
}

func (a *api) removeHost(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, func(ctx context.Context) error { return a.c.Remove(ctx, r.PathValue("host")) })
}

// MigrateRequest is the body of POST /v1/vms/{name}/migrate.
type MigrateRequest struct {
	Host string `json:"host"`
}

func (a *api) migrate(w http.ResponseWriter, r *http.Request) {
	var req MigrateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Host == "" {
		fail(w, http.StatusBadRequest, "bad_request", "host: missing: name the host to move the VM to")
		return
	}
	a.write(w, r, func(ctx context.Context) error { return a.c.Migrate(ctx, r.PathValue("name"), req.Host) })
}

func (a *api) putVM(w http.ResponseWriter, r *http.Request) {
	var vm ha.VM
	if !decode(w, r, &vm) {
		return
	}
	if vm.Name != r.PathValue("name") {
		fail(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("name: %q in the body, %q in the path: they must agree", vm.Name, r.PathValue("name")))
		return
	}
	a.write(w, r, func(ctx context.Context) error { return a.c.PutVM(ctx, vm) })
}

func (a *api) deleteVM(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, func(ctx context.Context) error { return a.c.DeleteVM(ctx, r.PathValue("name")) })
}

func (a *api) putVolume(w http.ResponseWriter, r *http.Request) {
	var v ha.Volume
	if !decode(w, r, &v) {
		return
	}
	if v.ID != r.PathValue("id") {
		fail(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("id: %q in the body, %q in the path: they must agree", v.ID, r.PathValue("id")))
		return
	}
	a.write(w, r, func(ctx context.Context) error { return a.c.PutVolume(ctx, v) })
}

func (a *api) deleteVolume(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, func(ctx context.Context) error { return a.c.DeleteVolume(ctx, r.PathValue("id")) })
}

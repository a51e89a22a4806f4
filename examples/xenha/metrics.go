package main

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/xenctl"
)

// metrics are one member's Prometheus metrics. Gauges are read from the
// member at scrape time; counters and the histogram follow the replicated
// state (fence records and incidents) as the member applies it, so every
// member counts the pool's failovers, and a restarted member counts from
// what it saw after its start.
type metrics struct {
	c   *ha.Cluster
	reg *prometheus.Registry

	fences        *prometheus.CounterVec
	fenceAttempts *prometheus.CounterVec
	failovers     *prometheus.CounterVec
	phase         *prometheus.HistogramVec
	total         prometheus.Histogram
	refused       prometheus.Counter
	reconcile     prometheus.Counter

	mu       sync.Mutex
	primed   bool
	fenced   map[string]bool // host/epoch of fence records counted
	attempts map[string]int  // incident ID → attempts counted
	closed   map[string]bool // incident IDs counted as closed
}

// newReconcileErrors is xenha_reconcile_errors_total, made before the
// member (whose logger counts into it).
func newReconcileErrors() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xenha_reconcile_errors_total", Help: "Failed actions of this host's agent (start, stop, network guard), each retried next round.",
	})
}

func newMetrics(c *ha.Cluster, reconcile prometheus.Counter) *metrics {
	m := &metrics{
		c: c, reg: prometheus.NewRegistry(),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenha_fences_total", Help: "Committed fence proofs, by method (manual: an operator's acknowledgement).",
		}, []string{"method"}),
		fenceAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenha_fence_attempts_total", Help: "Fence attempts recorded in incidents, by method and result (success, failure).",
		}, []string{"method", "result"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenha_failovers_total", Help: "Incidents (host failures) by result: opened, closed.",
		}, []string{"result"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xenha_failover_phase_duration_seconds", Help: "Duration of each phase of closed incidents (detect, fence, storage, place, start).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}, []string{"phase"}),
		total: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xenha_failover_duration_seconds", Help: "From detection to the last VM running, of closed incidents.",
			Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xenha_commands_refused_total", Help: "Commands the state machine refused, as this member applied them.",
		}),
		reconcile: reconcile,
		fenced:    map[string]bool{}, attempts: map[string]int{}, closed: map[string]bool{},
	}
	m.reg.MustRegister(m.collectors()...)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.fences, m.fenceAttempts, m.failovers, m.phase, m.total, m.refused, m.reconcile, (*gauges)(m)}
}

// follow counts what the member applies until ctx ends.
func (m *metrics) follow(ctx context.Context) {
	m.observe(ctx)
	for ev := range m.c.Subscribe(ctx) {
		switch {
		case ev.Kind == ha.EventRefused:
			m.refused.Inc()
		case ev.Kind == ha.EventApplied && (strings.HasPrefix(ev.Message, "host.") || strings.HasPrefix(ev.Message, "incident.") ||
			ev.Message == "vm.assign" || ev.Message == "vm.observed"):
			m.observe(ctx)
		}
	}
}

// observe counts the fence records and incidents not counted yet. The
// first call only remembers what is there: counters start at zero when the
// member starts.
func (m *metrics) observe(ctx context.Context) {
	s, err := m.c.State(ctx, ha.Stale)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	count := m.primed
	m.primed = true
	for _, f := range s.Fences {
		k := f.Host + "/" + strconv.FormatUint(f.Epoch, 10)
		if !m.fenced[k] && count {
			m.fences.WithLabelValues(f.Method).Inc()
		}
		m.fenced[k] = true
	}
	for _, inc := range s.Incidents {
		if _, seen := m.attempts[inc.ID]; !seen && count {
			m.failovers.WithLabelValues("opened").Inc()
		}
		for _, a := range inc.Attempts[min(m.attempts[inc.ID], len(inc.Attempts)):] {
			if count {
				result := "success"
				if a.Err != "" {
					result = "failure"
				}
				m.fenceAttempts.WithLabelValues(a.Method, result).Inc()
			}
		}
		m.attempts[inc.ID] = len(inc.Attempts)
		if inc.Closed.IsZero() || m.closed[inc.ID] {
			continue
		}
		m.closed[inc.ID] = true
		if !count {
			continue
		}
		m.failovers.WithLabelValues("closed").Inc()
		for _, p := range inc.Phases {
			if !p.End.IsZero() {
				m.phase.WithLabelValues(p.Name).Observe(p.Duration().Seconds())
			}
		}
		m.total.Observe(inc.Duration().Seconds())
	}
}

// gauges is the scrape-time part of metrics.
type gauges metrics

var (
	descRaftState  = prometheus.NewDesc("xenha_raft_state", "1 for this member's Raft state (Leader, Follower, Candidate, Shutdown).", []string{"state"}, nil)
	descRaftTerm   = prometheus.NewDesc("xenha_raft_term", "This member's current Raft term.", nil, nil)
	descCommit     = prometheus.NewDesc("xenha_raft_commit_index", "This member's Raft commit index.", nil, nil)
	descApplied    = prometheus.NewDesc("xenha_raft_applied_index", "The last Raft log index this member applied.", nil, nil)
	descLeader     = prometheus.NewDesc("xenha_leader", "1 if this member leads the pool.", nil, nil)
	descHasLeader  = prometheus.NewDesc("xenha_raft_has_leader", "1 if this member knows a leader (0: no quorum reachable).", nil, nil)
	descHosts      = prometheus.NewDesc("xenha_hosts", "Hosts by state.", []string{"state"}, nil)
	descVMs        = prometheus.NewDesc("xenha_vms", "VMs by observed state (unplaced: no host assigned).", []string{"state"}, nil)
	descLeaseAge   = prometheus.NewDesc("xenha_host_lease_age_seconds", "Seconds since each host sent its last committed lease renewal (on its own clock).", []string{"host"}, nil)
	descOpen       = prometheus.NewDesc("xenha_incidents_open", "Incidents not yet closed.", nil, nil)
	descDropped    = prometheus.NewDesc("xenha_events_dropped_total", "Events this member dropped because a subscriber was slow.", nil, nil)
	hostStates     = []ha.HostState{ha.HostJoining, ha.HostOnline, ha.HostSuspect, ha.HostFenced, ha.HostMaintenance, ha.HostLeft}
	raftStateNames = []string{"Leader", "Follower", "Candidate", "Shutdown"}
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descCommit, descApplied, descLeader, descHasLeader,
		descHosts, descVMs, descLeaseAge, descOpen, descDropped} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	stats := g.c.RaftStats()
	for _, s := range raftStateNames {
		gauge(descRaftState, b2f(stats["state"] == s), s)
	}
	num := func(k string) float64 { v, _ := strconv.ParseFloat(stats[k], 64); return v }
	gauge(descRaftTerm, num("term"))
	gauge(descCommit, num("commit_index"))
	gauge(descApplied, num("applied_index"))
	gauge(descLeader, b2f(g.c.IsLeader()))
	leader, _ := g.c.Leader()
	gauge(descHasLeader, b2f(leader != ""))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(g.c.EventsDropped()))
	s, err := g.c.State(context.Background(), ha.Stale)
	if err != nil {
		return
	}
	byState := map[ha.HostState]int{}
	now := time.Now()
	for id, h := range s.Hosts {
		byState[h.State]++
		if !h.LeaseSent.IsZero() {
			gauge(descLeaseAge, now.Sub(h.LeaseSent).Seconds(), id)
		}
	}
	for _, st := range hostStates {
		gauge(descHosts, float64(byState[st]), string(st))
	}
	vms := map[string]int{}
	for _, v := range s.VMs {
		vms[vmState(v)]++
	}
	for st, n := range vms {
		gauge(descVMs, float64(n), st)
	}
	open := 0
	for _, inc := range s.Incidents {
		if inc.Closed.IsZero() {
			open++
		}
	}
	gauge(descOpen, float64(open))
}

// vmState is the VM's state as the CLI and metrics show it.
func vmState(v *ha.VM) string {
	switch {
	case v.Stopped:
		return "stopped"
	case v.Host == "":
		return "unplaced"
	case v.Observed.Host != v.Host || v.Observed.State == xenctl.StateUnknown:
		return "starting"
	}
	return v.Observed.State.String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// countingHandler counts the host agent's failed actions (logged at warn
// or error with "failed" in the message, each retried next round) into
// xenha_reconcile_errors_total, and passes every record on.
type countingHandler struct {
	slog.Handler
	n prometheus.Counter
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && strings.Contains(r.Message, "failed") {
		h.n.Inc()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.n}
}

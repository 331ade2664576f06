package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/sdk/storage"
)

// metrics are the host's Prometheus metrics, served at GET /metrics: requests by route,
// executions by runner and outcome, governance flags, the plugin processes, and the Go
// runtime and process. Labels are bounded: routes are the route table's patterns, never
// paths with ids in them.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	executions   *prometheus.CounterVec
	execDuration *prometheus.HistogramVec
	flags        *prometheus.CounterVec
	// recordsFailed counts executions that ran but whose trace the storage did not take.
	recordsFailed *prometheus.CounterVec
	// refused counts executions refused before they ran, by reason (refusedReason).
	refused *prometheus.CounterVec
	// ruleFlags counts flags by the rule id that raised them: one of ruleIDs (the rule
	// ids the configured rule plugins describe, and their names), else "other".
	ruleFlags *prometheus.CounterVec
	ruleIDs   map[string]bool
	// merges counts merges by outcome: allowed, refused, withdrawn.
	merges *prometheus.CounterVec
	// purgedSessions and purgedTraces count what the retention sweep purged.
	purgedSessions, purgedTraces prometheus.Counter
	// backups counts GET /v1/backup by outcome (sent, not_sent, failed, refused);
	// backupLast is the time of the last backup sent whole.
	backups    *prometheus.CounterVec
	backupLast prometheus.Gauge
	// routes caches the series of requests by route and code.
	routesMu sync.RWMutex
	routes   map[routeCode]*routeMetrics
}

func newMetrics(opts Options) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), ruleIDs: map[string]bool{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_http_requests_total", Help: "API requests answered, by route pattern (its method and path, e.g. \"GET /v1/sessions/{id}\") and status code.",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "limit_http_request_duration_seconds", Help: "Time to answer an API request (to its last byte for a stream), by route pattern.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route"})
	m.executions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_executions_total", Help: "Executions by runner and status (ok, error, timeout, cancelled, limit_exceeded; blocked when governance refused the input).",
	}, []string{"runner", "status"})
	m.execDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "limit_execution_duration_seconds", Help: "Time an execution took in its runner, by runner.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"runner"})
	m.flags = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_governance_flags_total", Help: "Flags governance rules raised on executions, by flag.",
	}, []string{"flag"})
	m.recordsFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_execution_records_failed_total", Help: "Executions that ran but whose trace the storage did not take, by outcome: pending (kept in the pending-outcomes journal until it does; answered record_pending) or lost (answered record_lost).",
	}, []string{"outcome"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_executions_refused_total", Help: "Executions refused before they ran, by reason: max_concurrency (429: the session's slots stayed taken), max_processes (503: every process of the runner busy), governance_unavailable (503: a rule could not answer and the policy fails closed), uncheckable (422: input beyond what a rule checks), storage_unavailable (503: it could not be recorded), disk_low (503: the data_dir's disk is below host.min_free_disk), stopping (503: the host shuts down).",
	}, []string{"reason"})
	m.ruleFlags = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_governance_rule_flags_total", Help: "Flags governance rules raised on executions, by the id of the rule that raised them (a configured rule plugin's rule ids or its name; other for any other id).",
	}, []string{"rule"})
	m.merges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_merges_total", Help: "Merges into the shared record by outcome: allowed, refused (under the session's policy, or a chain that does not verify), withdrawn (a merged trace taken out by a later flag).",
	}, []string{"outcome"})
	for _, o := range []string{"allowed", "refused", "withdrawn"} {
		m.merges.WithLabelValues(o)
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "limit_build_info", Help: "Always 1; its label is the version of limitd.",
	}, []string{"version"})
	buildInfo.WithLabelValues(opts.Version).Set(1)
	m.reg.MustRegister(m.refused, m.ruleFlags, m.merges, buildInfo)
	if opts.Rules != nil {
		for _, r := range opts.Rules.Rules() {
			m.ruleIDs[r.Plugin] = true
			for _, d := range r.Rules {
				m.ruleIDs[d.ID] = true
			}
		}
		m.reg.MustRegister(ruleErrorCollector{opts.Rules})
	}
	if e := opts.Engine; e != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "limit_execution_pending_outcomes", Help: "Outcomes of executions that ran while the storage would not take their trace, waiting in the journal (data_dir/pending-outcomes) until it does: its files.",
		}, func() float64 { return float64(e.PendingCount()) }))
	}
	m.reg.MustRegister(opts.Collectors...)
	m.purgedSessions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "limit_sessions_purged_total", Help: "Deleted sessions this host purged from storage past host.deleted_retention.",
	})
	m.purgedTraces = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "limit_traces_purged_total", Help: "Traces of deleted sessions this host purged from storage past host.deleted_retention (their copies in the shared record stay).",
	})
	m.backups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "limit_backups_total", Help: "Online backups asked for (GET /v1/backup), by outcome: sent (whole), not_sent (made, but the client did not take it whole), failed (not made: the storage, the disk), refused (one was being made).",
	}, []string{"outcome"})
	for _, o := range []string{"sent", "not_sent", "failed", "refused"} {
		m.backups.WithLabelValues(o)
	}
	m.backupLast = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "limit_backup_last_success_timestamp_seconds", Help: "When the last online backup was sent whole (Unix time); 0 before the first since limitd started.",
	})
	m.reg.MustRegister(m.requests, m.duration, m.executions, m.execDuration, m.flags, m.recordsFailed, m.purgedSessions, m.purgedTraces, m.backups, m.backupLast,
		pluginCollector{opts.Plugins, opts.PluginRestarts},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the registry in Prometheus' text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// request counts one answered request.
func (m *metrics) request(route string, code int, took time.Duration) {
	if code == 0 { // the handler wrote nothing: net/http answers 200
		code = http.StatusOK
	}
	k := routeCode{route, code}
	m.routesMu.RLock()
	rm := m.routes[k]
	m.routesMu.RUnlock()
	if rm == nil {
		rm = &routeMetrics{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(route),
		}
		// Routes and codes are bounded (see metrics), and so is this cache.
		m.routesMu.Lock()
		if m.routes == nil {
			m.routes = map[routeCode]*routeMetrics{}
		}
		m.routes[k] = rm
		m.routesMu.Unlock()
	}
	rm.requests.Inc()
	rm.duration.Observe(took.Seconds())
}

// routeCode is a route pattern and a status code it answered with.
type routeCode struct {
	route string
	code  int
}

// routeMetrics are the series of one route and code, kept to spare hashing the labels of
// every request.
type routeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// execution counts an execution's outcome: res when it ran, or the error that stopped it.
// One that ran but whose trace the storage did not take (record_pending, record_lost)
// counts by its own status, as one recorded does, and in limit_execution_records_failed_total.
func (m *metrics) execution(runner string, res *execution.Result, err error) {
	var (
		blocked *execution.BlockedError
		refused *execution.RefusedError
		pending *execution.RecordPendingError
		lost    *execution.RecordLostError
	)
	switch {
	case errors.As(err, &pending) && pending.Result != nil:
		res = pending.Result
		m.recordsFailed.WithLabelValues("pending").Inc()
	case errors.As(err, &lost) && lost.Result != nil:
		res = lost.Result
		m.recordsFailed.WithLabelValues("lost").Inc()
	}
	switch {
	case res != nil:
		m.executions.WithLabelValues(runner, res.Status).Inc()
		m.execDuration.WithLabelValues(runner).Observe(time.Duration(res.DurationUS * int64(time.Microsecond)).Seconds())
		m.countFlags(res.Flags)
	case errors.As(err, &blocked):
		m.executions.WithLabelValues(runner, "blocked").Inc()
		raised := blocked.Raised
		if raised == nil {
			raised = blocked.Flags
		}
		m.countFlags(raised)
	default:
		if reason := refusedReason(err); reason != "" {
			m.refused.WithLabelValues(reason).Inc()
		}
		// Refused as a rule could not answer: what the others raised is in its trace,
		// and counted as a blocked execution's flags are.
		if errors.As(err, &refused) {
			m.countFlags(refused.Raised)
		}
	}
}

// countFlags counts flags raised on an execution, by flag and by rule.
func (m *metrics) countFlags(flags []governance.Flag) {
	for _, f := range flags {
		m.flags.WithLabelValues(f.Flag).Inc()
		rule := f.RuleID
		if !m.ruleIDs[rule] {
			rule = "other"
		}
		m.ruleFlags.WithLabelValues(rule).Inc()
	}
}

// refusedReason is why err refused an execution before it ran, for
// limit_executions_refused_total, or "" for an error of the request (invalid, not found)
// or of the host that the request counts tell of.
func refusedReason(err error) string {
	switch {
	case errors.Is(err, session.ErrBusy):
		return "max_concurrency"
	case errors.Is(err, plugins.ErrRunnerBusy):
		return "max_processes"
	case errors.Is(err, execution.ErrGovernanceUnavailable):
		return "governance_unavailable"
	case errors.Is(err, execution.ErrUncheckable):
		return "uncheckable"
	case errors.Is(err, execution.ErrStopping):
		return "stopping"
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrNoSpace):
		return "storage_unavailable"
	case errors.Is(err, diskspace.ErrLow):
		return "disk_low"
	}
	return ""
}

// merge counts a merge's outcome: allowed, refused or withdrawn.
func (m *metrics) merge(outcome string) { m.merges.WithLabelValues(outcome).Inc() }

// ruleErrorCollector reports the governance rules' failed calls at each scrape.
type ruleErrorCollector struct{ rules *governance.Evaluator }

var ruleErrorsDesc = prometheus.NewDesc("limit_governance_rule_errors_total", "Calls to a governance rule plugin that failed (it could not be reached or did not answer in time; executions then go on with a governance_error entry, or are refused under a policy that fails closed), by configured rule.", []string{"rule"}, nil)

func (c ruleErrorCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ruleErrorsDesc }

func (c ruleErrorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.rules.ErrorCounts() {
		ch <- prometheus.MustNewConstMetric(ruleErrorsDesc, prometheus.CounterValue, float64(e.Count), e.Rule)
	}
}

// pluginCollector reports the plugin processes at each scrape, from the same status
// /v1/health shows, and the count of those restarted or replaced.
type pluginCollector struct {
	status   func() []plugins.Status
	restarts func() []plugins.RestartCount // nil: none
}

var (
	pluginProcessesDesc = prometheus.NewDesc("limit_plugin_processes", "Plugin processes running, by plugin, kind and health (a plugin being restarted has none: 0 for both).", []string{"plugin", "kind", "healthy"}, nil)
	pluginRestartsDesc  = prometheus.NewDesc("limit_plugin_restarts_total", "Plugin processes restarted or replaced since the host started, by plugin, kind and reason: crash (a supervised plugin restarted, a runner process found dead, an idle pre-started one, kind pool, found dead), failed (a runner process stopped after failing an execution), idle (idle_timeout), max_processes (stopped to make room).", []string{"plugin", "kind", "reason"}, nil)
	backendDesc         = prometheus.NewDesc("limit_plugin_backend", "Figures a plugin reports of its own state (a storage backend's write-ahead log, for one), by plugin and figure.", []string{"plugin", "figure"}, nil)
	backendTotalDesc    = prometheus.NewDesc("limit_plugin_backend_total", "Counts a plugin reports of its own (figures named NAME_total, here by NAME: a storage backend's checkpoints, for one), by plugin and figure; they start again from 0 when its process restarts.", []string{"plugin", "figure"}, nil)
)

func (c pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pluginProcessesDesc
	ch <- pluginRestartsDesc
	ch <- backendDesc
	ch <- backendTotalDesc
}

func (c pluginCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ name, kind string }
	up, down, seen := map[key]int{}, map[key]int{}, map[key]bool{}
	figures := map[key]float64{} // {plugin, figure}, summed over the plugin's processes
	for _, st := range c.status() {
		k := key{st.Name, st.Kind}
		seen[k] = true
		switch {
		case st.PID == 0:
			// No process: a supervised plugin being restarted, a pool whose starts fail.
		case st.Healthy:
			up[k]++
		default:
			down[k]++
		}
		for fig, v := range st.Metrics {
			figures[key{st.Name, fig}] += v
		}
	}
	for k, v := range figures {
		// A figure named NAME_total is a count (see storage.Health), NAME the count's name.
		if name, ok := strings.CutSuffix(k.kind, "_total"); ok && name != "" {
			ch <- prometheus.MustNewConstMetric(backendTotalDesc, prometheus.CounterValue, v, k.name, name)
			continue
		}
		ch <- prometheus.MustNewConstMetric(backendDesc, prometheus.GaugeValue, v, k.name, k.kind)
	}
	for k := range seen {
		ch <- prometheus.MustNewConstMetric(pluginProcessesDesc, prometheus.GaugeValue, float64(up[k]), k.name, k.kind, "true")
		ch <- prometheus.MustNewConstMetric(pluginProcessesDesc, prometheus.GaugeValue, float64(down[k]), k.name, k.kind, "false")
	}
	if c.restarts != nil {
		for _, r := range c.restarts() {
			ch <- prometheus.MustNewConstMetric(pluginRestartsDesc, prometheus.CounterValue, float64(r.Count), r.Name, r.Kind, r.Reason)
		}
	}
}

// statusWriter records the status code a handler answered with. It passes Flush through
// (server-sent events) and unwraps for http.ResponseController.
//
// When the handler begins its answer, the answer gets writeTimeout (the server's
// WriteTimeout, api.write_timeout) from then to be written: net/http counts it from the
// end of the request's headers, so it also bounded the handler's work before its first
// write, and an execution, an RD computation or an export that legitimately took longer
// lost its answer (the client saw the connection cut, the work done). How long that work
// may take is bounded by its own limits (the execution's timeout, rd.timeout).
type statusWriter struct {
	http.ResponseWriter
	code         int
	writeTimeout time.Duration
}

// begin starts the answer with status code.
func (w *statusWriter) begin(code int) {
	if w.code != 0 {
		return
	}
	w.code = code
	if w.writeTimeout > 0 {
		writeWithin(http.NewResponseController(w.ResponseWriter), w.writeTimeout)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	w.begin(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.begin(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// writeWithin gives the rest of the response d from now to be written: past it, a write
// fails and the connection is closed. Answers get the server's write timeout from their
// first byte (statusWriter), each write of an event stream sseStall.
func writeWithin(rc *http.ResponseController, d time.Duration) {
	_ = rc.SetWriteDeadline(time.Now().Add(d))
}

func (w *statusWriter) Flush() { _ = w.FlushError() }

// FlushError flushes and says whether the client took it (http.ResponseController uses it).
func (w *statusWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

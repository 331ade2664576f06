package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// Defaults of the config attributes.
const (
	defaultPython   = "/usr/bin/python3"
	defaultWorkers  = 2
	defaultTimeout  = "3s"
	defaultMaxBytes = 4 << 20
	maxWorkers      = 64
	// The default max_waiting_per_session is waitingPerWorker times workers, at least
	// minDefaultWaiting: a burst of evaluations from one session (16 at once in the SDK
	// conformance suite; up to its max_concurrency executions) waits rather than fails.
	waitingPerWorker  = 4
	minDefaultWaiting = 32
	maxWaitingLimit   = 4096
)

var (
	defaultContentTypes = []string{"code/python", "text/x-python", "application/x-python"}
	defaultRunners      = []string{"python"}
)

// check is one pattern the analyzer reports, and what it means.
type check struct {
	// ID is the analyzer's name for the check: the Bandit id where there is one.
	ID string
	// Bandit is the Bandit test id, or "" when Bandit has none.
	Bandit   string
	Flag     string
	Severity int
	Desc     string
}

// checks maps the analyzer's checks to flags and severities.
var checks = []check{
	{"B602", "B602", governance.FlagUnsafe, 7, "subprocess call with shell=True"},
	{"B604", "B604", governance.FlagUnsafe, 5, "any other call with shell=True"},
	{"B605", "B605", governance.FlagUnsafe, 7, "os.system, os.popen and the like: a process started through a shell"},
	{"B606", "B606", governance.FlagHighRisk, 5, "os.exec*, os.spawn*, pty.spawn: a process started without a shell"},
	{"B307", "B307", governance.FlagUnsafe, 7, "eval()"},
	{"B102", "B102", governance.FlagUnsafe, 7, "exec() and compile() of code to run"},
	{"B301", "B301", governance.FlagUnsafe, 7, "pickle, dill, shelve, joblib deserialisation"},
	{"B302", "B302", governance.FlagUnsafe, 6, "marshal deserialisation"},
	{"numpy-pickle", "", governance.FlagUnsafe, 7, "numpy.load with allow_pickle=True: unpickling (Bandit has no test for it)"},
	{"B506", "B506", governance.FlagUnsafe, 6, "yaml.load without a safe Loader"},
	{"B614", "B614", governance.FlagUnsafe, 6, "torch.load without weights_only=True"},
	{"B501", "B501", governance.FlagUnsafe, 5, "HTTP request with verify=False"},
	{"B323", "B323", governance.FlagUnsafe, 5, "unverified TLS context"},
	{"B105", "B105", governance.FlagUnsafe, 4, "hard-coded password assigned to a variable"},
	{"B106", "B106", governance.FlagUnsafe, 4, "hard-coded password passed as an argument"},
	{"B107", "B107", governance.FlagUnsafe, 4, "hard-coded password as an argument default"},
	{"secret-literal", "", governance.FlagUnsafe, 6, "string literal that looks like a cloud or API credential or a private key"},
	{"B104", "B104", governance.FlagHighRisk, 4, "binding all network interfaces (0.0.0.0)"},
	{"B103", "B103", governance.FlagUnsafe, 6, "chmod to a world-writable mode"},
	{"B608", "B608", governance.FlagUnsafe, 6, "SQL query built from strings"},
	{"dynamic-import", "", governance.FlagHighRisk, 4, "__import__ or importlib.import_module"},
	{"B202", "B202", governance.FlagUnsafe, 6, "tarfile extractall/extract or shutil.unpack_archive without filter='data': members written outside the target"},
	{"B320", "B320", governance.FlagUnsafe, 6, "lxml parsing that resolves external entities (its default parser on data, or resolve_entities=True): XXE"},
	{"B507", "B507", governance.FlagUnsafe, 6, "paramiko AutoAddPolicy or WarningPolicy: SSH host keys not checked"},
	{"introspection", "", governance.FlagHighRisk, 5, "a function's globals or a module's builtins reached by attribute (__globals__, __builtins__), as sandbox escapes do"},
	{"reverse-shell", "", governance.FlagMalicious, 10, "reverse shell: a socket handed to a shell, or a /dev/tcp or nc -e command"},
	{"destructive", "", governance.FlagMalicious, 9, "destructive commands: rm -rf /, mkfs, fork bombs (in a command, or os.fork or process starts in a loop or recursion without end), rmtree of system trees"},
	{"sandbox-escape", "", governance.FlagMalicious, 9, "sandbox escape: object's subclasses reached from a literal's class (().__class__.__base__.__subclasses__()), and builtins or globals through them"},
	{"persistence", "", governance.FlagMalicious, 7, "persistence: a write to a shell start-up file, authorized_keys, cron, a systemd unit, an init script, sudoers, a .pth file (or a command that does, crontab installing a table)"},
	{"download-exec", "", governance.FlagMalicious, 8, "download and run: a downloaded file run (as a program or by an interpreter), code fetched from the network given to exec/eval, a download piped into a shell (curl … | sh)"},
	{"exfiltration", "", governance.FlagMalicious, 9, "credentials from the environment or credential files sent over the network: in a body or URL, to a host chosen at run time, over plain http, to a raw IP address, a webhook, paste or tunnel service or a look-alike of the credential's service"},
	// A credential sent as authentication to a literal https host the rule does not know as
	// its service's (GOOGLE_API_KEY to generativelanguage.googleapis.com): how API clients
	// work, so a note that default lets run and merge; strict refuses it, as it refuses
	// every unverified flag.
	{"credential-sent", "", governance.FlagUnverified, 2, "a credential from the environment sent as authentication (headers=, auth=) over https to a literal host not known as its service's"},
	// Code the rule's Python does not parse is not analysed (only its other lines are, see
	// Evaluate): said as a flag that default lets run, so the user sees Python's own
	// SyntaxError from the runner, and strict refuses (it blocks unverified at 1).
	{"unparsed", "", governance.FlagUnverified, 3, "code that does not parse with the rule's Python, so not analysed (its other lines are checked, the failing ones skipped)"},
}

// checkByID indexes checks.
var checkByID = func() map[string]check {
	m := map[string]check{}
	for _, c := range checks {
		m[c.ID] = c
	}
	return m
}()

// ruleID is the rule id of a check.
func ruleID(c check) string { return "codesafety." + c.ID }

// rawConfig is the config block as the host sends it.
type rawConfig struct {
	Python       *string   `json:"python"`
	Workers      *float64  `json:"workers"`
	Timeout      *string   `json:"timeout"`
	MaxBytes     *float64  `json:"max_bytes"`
	MaxWaiting   *float64  `json:"max_waiting_per_session"`
	ContentTypes *[]string `json:"content_types"`
	Runners      *[]string `json:"runners"`
}

// settings is a checked configuration.
type settings struct {
	python       string
	workers      int
	timeout      time.Duration
	maxBytes     int
	maxWaiting   int
	contentTypes []string
	runners      []string
}

// state is what Configure sets up; evaluations use the one current when they start.
type state struct {
	set  settings
	pool *pool
	// cache holds the analyses of code seen lately, by its sha256: the same code (a cell
	// run again, an agent's retry) is answered without a trip to the analyzer. The
	// analysis depends on the code alone; a new configuration starts a new cache.
	cache *lru.Cache[[sha256.Size]byte, pyResponse]
}

// cacheSize is how many analyses a configuration keeps.
const cacheSize = 4096

// rule is the plugin.
type rule struct {
	log hclog.Logger
	cur atomic.Pointer[state]
}

func newRule(log hclog.Logger) *rule { return &rule{log: log} }

// close stops the helper processes.
func (r *rule) close() {
	if s := r.cur.Load(); s != nil {
		s.pool.close()
	}
}

// PluginInfo implements base.Plugin.
func (r *rule) PluginInfo() base.Info {
	return base.Info{
		Name: "codesafety", Kind: base.KindGovernance, Version: version.Version,
		Capabilities: []string{"python-ast", "bandit-ids"},
		Description:  "Unsafe, high-risk and malicious Python code found on its syntax tree (Bandit ids where they exist).",
	}
}

// ConfigSchema implements base.Plugin.
func (r *rule) ConfigSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{Name: "python", Type: "string", Default: defaultPython,
			Description: "Absolute path of the Python 3 interpreter that parses code (only its standard library is used). It must be of the runner's interpreter's version (the python runner's interpreter, or its venv's): code in syntax this one does not read (a newer Python's) is not analysed, only reported as such (flag unverified, which the default policy lets run)."},
		{Name: "workers", Type: "number", Default: defaultWorkers,
			Description: "Most analyzer processes running at once; each is long-lived and reused."},
		{Name: "timeout", Type: "string", Default: defaultTimeout,
			Description: "Longest one analysis may take, as a duration such as \"3s\"; an analyzer that overruns is killed and replaced, and the evaluation fails."},
		{Name: "max_bytes", Type: "number", Default: defaultMaxBytes,
			Description: "Largest code accepted, in bytes; larger code fails evaluation with an error. Python parses dense code at roughly 0.25-0.5 MiB/s, so code near the default needs a longer timeout than the default."},
		{Name: "max_waiting_per_session", Type: "number",
			Description: fmt.Sprintf("Most analyses one session may have waiting for a busy analyzer; more fail at once with an error saying the session has too many code analyses waiting. Defaults to %d times workers, and at least %d. Requests without a session id count as one session. A freed analyzer goes to the waiting session that holds the fewest, so one session's slow code does not queue the others behind it.", waitingPerWorker, minDefaultWaiting)},
		{Name: "content_types", Type: "list(string)", Default: defaultContentTypes,
			Description: "Content types evaluated as Python code."},
		{Name: "runners", Type: "list(string)", Default: defaultRunners,
			Description: "Runner names whose input is evaluated as Python code whatever its content type."},
	}}
}

// parseConfig decodes and checks a configuration, collecting every problem.
func parseConfig(req base.ConfigureRequest) (settings, base.Diagnostics) {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return settings{}, ds
	}
	var ds base.Diagnostics
	set := settings{python: defaultPython, workers: defaultWorkers, maxBytes: defaultMaxBytes,
		contentTypes: defaultContentTypes, runners: defaultRunners}
	if raw.Python != nil {
		set.python = *raw.Python
	}
	switch fi, err := os.Stat(set.python); {
	case !strings.HasPrefix(set.python, "/"):
		ds = append(ds, base.Errorf([]string{"python"}, "python must be an absolute path, got %q", set.python))
	case err != nil:
		ds = append(ds, base.Diagnostic{Severity: base.SeverityError, Path: []string{"python"},
			Summary: fmt.Sprintf("python interpreter %s not found", set.python),
			Detail:  "Install Python 3 (apt-get install python3) or set python to the interpreter's absolute path."})
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		ds = append(ds, base.Errorf([]string{"python"}, "%s is not an executable file", set.python))
	}
	if raw.Workers != nil {
		n := *raw.Workers
		if n != math.Trunc(n) || n < 1 || n > maxWorkers {
			ds = append(ds, base.Errorf([]string{"workers"}, "workers must be a whole number from 1 to %d, got %v", maxWorkers, n))
		} else {
			set.workers = int(n)
		}
	}
	timeout := defaultTimeout
	if raw.Timeout != nil {
		timeout = *raw.Timeout
	}
	if d, err := time.ParseDuration(timeout); err != nil || d <= 0 {
		ds = append(ds, base.Errorf([]string{"timeout"}, "timeout must be a positive duration such as \"3s\", got %q", timeout))
	} else {
		set.timeout = d
	}
	if raw.MaxBytes != nil {
		n := *raw.MaxBytes
		if n != math.Trunc(n) || n < 1 || n > 64<<20 {
			ds = append(ds, base.Errorf([]string{"max_bytes"}, "max_bytes must be a whole number from 1 to %d, got %v", 64<<20, n))
		} else {
			set.maxBytes = int(n)
		}
	}
	set.maxWaiting = max(waitingPerWorker*set.workers, minDefaultWaiting)
	if raw.MaxWaiting != nil {
		n := *raw.MaxWaiting
		if n != math.Trunc(n) || n < 1 || n > maxWaitingLimit {
			ds = append(ds, base.Errorf([]string{"max_waiting_per_session"}, "max_waiting_per_session must be a whole number from 1 to %d, got %v", maxWaitingLimit, n))
		} else {
			set.maxWaiting = int(n)
		}
	}
	if raw.ContentTypes != nil {
		set.contentTypes = *raw.ContentTypes
	}
	if raw.Runners != nil {
		set.runners = *raw.Runners
	}
	return set, ds
}

// Configure implements base.Plugin. It checks the interpreter by starting one analyzer.
func (r *rule) Configure(ctx context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, ds := parseConfig(req)
	if ds.HasErrors() {
		return ds
	}
	p := newPool(set.python, set.workers, set.maxWaiting, set.timeout)
	// The first analysis starts an interpreter: give it time whatever timeout says.
	if _, err := p.analyzeWithin(ctx, "", "pass\n", max(set.timeout, 10*time.Second)); err != nil {
		p.close()
		return append(ds, base.Diagnostic{Severity: base.SeverityError, Path: []string{"python"},
			Summary: fmt.Sprintf("%s cannot run the analyzer: %v", set.python, err),
			Detail:  "The analyzer needs Python 3.8 or newer with its standard library."})
	}
	if req.ValidateOnly {
		p.close()
		return ds
	}
	cache, err := lru.New[[sha256.Size]byte, pyResponse](cacheSize)
	if err != nil {
		p.close()
		return base.Diagnostics{base.Errorf(nil, "analysis cache: %v", err)}
	}
	if old := r.cur.Swap(&state{set: set, pool: p, cache: cache}); old != nil {
		old.pool.close()
	}
	return ds
}

// Describe implements governance.Rule.
// Each rule reads the configured content_types and the input of the configured runners
// (the host sends the rule nothing else).
func (r *rule) Describe(context.Context) ([]governance.RuleDescription, error) {
	set := settings{contentTypes: defaultContentTypes, runners: defaultRunners}
	if st := r.cur.Load(); st != nil {
		set = st.set
	}
	out := make([]governance.RuleDescription, 0, len(checks))
	for _, c := range checks {
		d := c.Desc
		if c.Bandit != "" {
			d = fmt.Sprintf("%s (Bandit %s)", d, c.Bandit)
		}
		out = append(out, governance.RuleDescription{
			ID: ruleID(c), Flags: []string{c.Flag}, Stages: []governance.Stage{governance.StagePre}, Description: d,
			ContentTypes: slices.Clone(set.contentTypes), Runners: slices.Clone(set.runners),
		})
	}
	return out, nil
}

// errNotConfigured is returned by Evaluate before a successful Configure.
var errNotConfigured = errors.New("codesafety rule is not configured")

// Evaluate implements governance.Rule.
func (r *rule) Evaluate(ctx context.Context, req governance.EvaluateRequest) ([]governance.Finding, error) {
	st := r.cur.Load()
	if st == nil {
		return nil, errNotConfigured
	}
	if req.Stage != governance.StagePre || !st.applies(req) || strings.TrimSpace(req.Content) == "" {
		return nil, nil
	}
	if len(req.Content) > st.set.maxBytes {
		return nil, fmt.Errorf("code is %d bytes, more than the %d max_bytes allows (%w); send smaller code, or raise max_bytes and timeout in the codesafety rule's config", len(req.Content), st.set.maxBytes, governance.ErrBeyondLimits)
	}
	key := sha256.Sum256([]byte(req.Content))
	resp, ok := st.cache.Get(key)
	if !ok {
		var err error
		if resp, err = st.pool.analyze(ctx, req.SessionID, req.Content); err != nil {
			return nil, fmt.Errorf("analyse code: %w", err)
		}
		if resp.Error != "" {
			return nil, fmt.Errorf("analyse code: %s", resp.Error)
		}
		st.cache.Add(key, resp)
	}
	if resp.Limit != "" {
		return nil, fmt.Errorf("analyse code: %s (%w)", resp.Limit, governance.ErrBeyondLimits)
	}
	lines := lineStarts(req.Content)
	out := make([]governance.Finding, 0, len(resp.Findings)+1)
	if resp.SyntaxError != "" {
		// Code that does not parse here may still run in the runner, whose interpreter
		// may be newer than the rule's python: said, never passed as clean.
		out = append(out, unparsed(req.Content, lines, resp))
	}
	for _, f := range resp.Findings {
		c, ok := checkByID[f.Check]
		if !ok {
			return nil, fmt.Errorf("analyzer reported unknown check %q", f.Check)
		}
		reason := f.Message
		if c.Bandit != "" {
			reason = fmt.Sprintf("[%s] %s", c.Bandit, f.Message)
		}
		reason += fmt.Sprintf(" (line %d)", f.Line)
		if resp.SyntaxError != "" {
			reason += fmt.Sprintf(" (found with line%s %s skipped, which do not parse)", plural(len(resp.Skipped)), joinInts(resp.Skipped))
		}
		out = append(out, governance.Finding{
			Flag: c.Flag, Severity: c.Severity, Score: float64(c.Severity) / 10, Reason: reason, RuleID: ruleID(c),
			Location: location(req.Content, lines, f),
		})
	}
	if resp.Total > len(resp.Findings) {
		r.log.Debug("findings truncated", "reported", len(resp.Findings), "total", resp.Total)
	}
	return out, nil
}

// unparsed is the finding for code the analyzer's Python does not parse: where and why,
// which Python it was, and what to do if the runner's interpreter reads it.
func unparsed(content string, lines []int, resp pyResponse) governance.Finding {
	c := checkByID["unparsed"]
	var b strings.Builder
	fmt.Fprintf(&b, "code not analysed: it does not parse as Python %s (%s)", resp.Python, resp.SyntaxError)
	if resp.Hint != "" {
		fmt.Fprintf(&b, "; the %s", resp.Hint)
	}
	b.WriteString(". If the runner's interpreter is this version, it reports the same error and runs nothing; if it is newer, it may run the code: set the codesafety rule's python to the runner's interpreter")
	switch {
	case len(resp.Skipped) > 0:
		fmt.Fprintf(&b, ". The rest was checked with line%s %s skipped", plural(len(resp.Skipped)), joinInts(resp.Skipped))
	default:
		b.WriteString(". The rest could not be checked")
	}
	line := resp.SyntaxLine
	if line < 1 || line > len(lines) {
		line = 1
	}
	end := len(content)
	if line < len(lines) {
		end = lines[line]
	}
	return governance.Finding{
		Flag: c.Flag, Severity: c.Severity, Score: float64(c.Severity) / 10, Reason: b.String(), RuleID: ruleID(c),
		Location: &governance.Location{Line: line, Column: 1, Start: lines[line-1], End: end},
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// applies reports whether req is Python code by its content type or runner.
func (s *state) applies(req governance.EvaluateRequest) bool {
	return slices.Contains(s.set.contentTypes, req.ContentType) || (req.Runner != "" && slices.Contains(s.set.runners, req.Runner))
}

// lineStarts returns the byte offset where each line starts (index 0 is line 1). Lines
// end as Python's tokenizer ends them, whose line numbers the analyzer reports: at "\n",
// "\r\n" or a lone "\r".
func lineStarts(s string) []int {
	out := []int{0}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n':
			out = append(out, i+1)
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			out = append(out, i+1)
		}
	}
	return out
}

// location converts the analyzer's line and UTF-8 byte columns to byte offsets; the
// column stays a count of bytes, 1-based, as the jailbreak rule's.
func location(content string, lines []int, f pyFinding) *governance.Location {
	off := func(line, col int) int {
		if line < 1 || line > len(lines) {
			return len(content)
		}
		return min(lines[line-1]+col, len(content))
	}
	start, end := off(f.Line, f.Col), off(f.EndLine, f.EndCol)
	if end < start {
		end = start
	}
	line := f.Line
	if line < 1 || line > len(lines) {
		line = 0
	}
	return &governance.Location{Line: line, Column: f.Col + 1, Start: start, End: end}
}

var _ governance.Rule = (*rule)(nil)

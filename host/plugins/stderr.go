package plugins

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Bounds of what is kept of a plugin process's stderr.
const (
	// stderrLines is how many of its last lines are kept, and logged if it dies.
	stderrLines = 20
	// stderrLineBytes bounds each kept line.
	stderrLineBytes = 512
	// startErrLines is how many of them a start error quotes.
	startErrLines = 5
)

// stderrTail keeps the last lines a plugin process wrote to its stderr that are not log
// lines: a message printed before it served, a log.Fatal, what a C library printed before
// it aborted, a Go panic and its stack. go-plugin logs the plain ones at DEBUG only (it
// cannot tell them from chatter), so at the usual log levels a crash would show no cause;
// the host logs them when the process ends unexpectedly, and quotes them in a start error.
// Lines go-plugin logs at a level of their own (the plugin's JSON log lines, lines
// prefixed "[INFO]" and the like) are not kept.
type stderrTail struct {
	mu      sync.Mutex
	lines   []tailLine // a ring of up to stderrLines
	next    int        // where the next line goes once the ring is full
	partial []byte     // the line being written
	cut     bool       // partial was cut at stderrLineBytes
	inPanic bool       // a panic started: go-plugin logs the rest at ERROR
	// panicLines counts the lines of the panic kept.
	panicLines int
}

type tailLine struct {
	text string
	// panic marks the lines of a panic or fatal runtime error, which go-plugin logs at
	// ERROR itself; start is the first of them.
	panic, start bool
}

// Write takes the process's stderr as go-plugin passes it on (a line, then its newline).
func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := stderrLineBytes - len(t.partial); len(chunk) > room {
			chunk, t.cut = chunk[:max(room, 0)], true
		}
		t.partial = append(t.partial, chunk...)
		if i < 0 {
			break
		}
		t.endLine()
		p = p[i+1:]
	}
	return n, nil
}

// schedDetail matches a line of the runtime's detailed scheduler trace.
var schedDetail = regexp.MustCompile(`^\s+[PMG]\d+: `)

// logPrefixes are the prefixes by which go-plugin logs a plain line at their level.
var logPrefixes = []string{"[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[ERROR]"}

func (t *stderrTail) endLine() {
	text := strings.TrimRight(string(t.partial), "\r")
	cut := t.cut
	t.partial, t.cut = t.partial[:0], false
	if strings.TrimSpace(text) == "" || (!cut && strings.HasPrefix(text, "{") && json.Valid([]byte(text))) {
		return
	}
	for _, p := range logPrefixes {
		if strings.HasPrefix(text, p) {
			return
		}
	}
	if strings.HasPrefix(text, "SCHED ") || schedDetail.MatchString(text) {
		// The runtime's scheduler trace, which storage plugins are started with
		// (internal/sysmon) and which a crash dumps in detail: noise here.
		return
	}
	l := tailLine{text: text, panic: t.inPanic}
	if !t.inPanic && (strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ")) {
		t.inPanic = true
		l.panic, l.start = true, true
	}
	if l.panic {
		// Enough of it for a start error; the rest of the stack would only push out the
		// lines before it, which go-plugin did not log above DEBUG.
		if t.panicLines >= startErrLines {
			return
		}
		t.panicLines++
	}
	if cut {
		l.text += " …"
	}
	if len(t.lines) < stderrLines {
		t.lines = append(t.lines, l)
		return
	}
	t.lines[t.next] = l
	t.next = (t.next + 1) % stderrLines
}

func (t *stderrTail) all() []tailLine {
	all := append(append([]tailLine{}, t.lines[t.next:]...), t.lines[:t.next]...)
	if len(t.partial) > 0 {
		all = append(all, tailLine{text: string(t.partial), panic: t.inPanic})
	}
	return all
}

// Unlogged returns the kept lines go-plugin logged at DEBUG only, oldest first.
func (t *stderrTail) Unlogged() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, l := range t.all() {
		if !l.panic {
			out = append(out, l.text)
		}
	}
	return out
}

// Last returns up to n of the kept lines for an error message: the last ones, or the
// first of a panic (its message rather than the end of its stack).
func (t *stderrTail) Last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := t.all()
	from := max(len(all)-n, 0)
	for i, l := range all {
		if l.start {
			from = i
			break
		}
	}
	var out []string
	for _, l := range all[from:min(from+n, len(all))] {
		out = append(out, l.text)
	}
	return out
}

// procWatch is what a process's logger and its Process share: its stderr's tail, and
// whether the host is stopping it (or gave up starting it), when its end is no news.
type procWatch struct {
	tail     stderrTail
	stopping atomic.Bool
	// shutdown is set when the host shuts down, when whatever ends the process (a
	// service manager's signal to every process of the unit, the host's kill) is expected.
	shutdown atomic.Bool
	// exited is set once go-plugin has reported the process exited; unstarted when the
	// host gave up its start (it exited, or did not complete its handshake in time).
	exited, unstarted atomic.Bool
	// session is the session a pre-started process was taken by (nil before): its logger,
	// made for the pool, does not name it.
	session atomic.Pointer[string]
}

// exitLogger is the logger go-plugin is given for a process: when go-plugin reports the
// process exited (after it has read all of its stderr) and the host did not stop it, the
// kept stderr lines follow at ERROR.
type exitLogger struct {
	hclog.Logger
	w *procWatch
}

func (l exitLogger) Info(msg string, args ...any) {
	l.Logger.Info(msg, args...)
	l.exited(msg)
}

func (l exitLogger) Error(msg string, args ...any) {
	if msg == "plugin process exited" && l.w.shutdown.Load() {
		// The host is shutting down: a signal to the whole service ended it ("signal:
		// terminated"), or the host's own stop did. No news.
		l.Logger.Info(msg, args...)
		return
	}
	l.Logger.Error(msg, args...)
	l.exited(msg)
}

// Warn lowers go-plugin's "plugin failed to exit gracefully" to DEBUG for a process that
// had exited, or whose start the host gave up: go-plugin says it whenever it stops a
// process that did not complete its handshake (a failed start, every failed restart
// attempt), which was never asked to exit gracefully.
func (l exitLogger) Warn(msg string, args ...any) {
	if msg == "plugin failed to exit gracefully" && (l.w.exited.Load() || l.w.unstarted.Load()) {
		l.Logger.Debug("plugin process stopped without a graceful exit: it had exited, or its start was given up", args...)
		return
	}
	if s := l.w.session.Load(); s != nil && msg == strayMessage {
		args = append(args, "session", *s)
	}
	l.Logger.Warn(msg, args...)
}

// strayMessage is the message base logs a plugin's stray output with.
const strayMessage = "plugin output outside its logger"

// Named is the logger go-plugin relays the process's own log lines through.
func (l exitLogger) Named(name string) hclog.Logger { return relayLogger{l.Logger.Named(name)} }

func (l exitLogger) exited(msg string) {
	if msg != "plugin process exited" {
		return
	}
	l.w.exited.Store(true)
	if l.w.stopping.Load() {
		return
	}
	// A panic's lines went to ERROR already; the plain lines before it did not.
	if lines := l.w.tail.Unlogged(); len(lines) > 0 {
		l.Logger.Error("plugin process ended unexpectedly; the last lines of its stderr", "stderr", strings.Join(lines, "\n"))
	}
}

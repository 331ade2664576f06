package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/sdk/governance"
)

// analyzerScript is the Python side. It is longer than one argument may be (128 KiB on
// Linux), so -c holds analyzerLoader, which reads it from a pipe on descriptor 3: no file
// is written.
//
//go:embed analyzer.py
var analyzerScript string

// analyzerLoader is the program given with -c: it runs the script read from descriptor 3
// as the main module.
const analyzerLoader = "import os\nwith os.fdopen(3, 'rb') as f:\n    s = f.read()\nexec(compile(s, 'analyzer.py', 'exec'))\n"

// helperMemoryLimit is the address-space limit of a helper process: ast trees of the
// largest accepted input fit well within it.
const helperMemoryLimit = 2 << 30

// pyFinding is one finding as the helper reports it.
type pyFinding struct {
	Check   string `json:"check"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	EndLine int    `json:"end_line"`
	EndCol  int    `json:"end_col"`
	Message string `json:"message"`
}

// pyResponse is one answer line of the helper.
type pyResponse struct {
	ID       *uint64     `json:"id"`
	Findings []pyFinding `json:"findings"`
	Total    int         `json:"total"`
	// SyntaxError is set for code that does not parse with the analyzer's Python (its
	// version), at SyntaxLine; Hint says when that line reads like newer syntax. Findings
	// then are those of the code with the Skipped lines left out, when that parses.
	SyntaxError string `json:"syntax_error"`
	SyntaxLine  int    `json:"syntax_line"`
	Python      string `json:"python"`
	Hint        string `json:"hint"`
	Skipped     []int  `json:"skipped"`
	// Limit says why the code could not be parsed or checked for want of resources (nested
	// too deeply, out of memory): the same code fails the same way again. Such code is
	// never clean: the runner's interpreter may parse it (its recursion limit raised).
	Limit string `json:"limit"`
	Error string `json:"error"`
}

// errHelper marks failures of the helper process itself (as opposed to the code).
var errHelper = errors.New("python analyzer")

// helper is one running analyzer process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *tailBuffer
	next   uint64
}

// startHelper starts python with the analyzer script and an empty environment.
func startHelper(python string) (*helper, error) {
	cmd := exec.Command(python, "-I", "-S", "-c", analyzerLoader)
	cmd.Env = []string{"LC_ALL=C.UTF-8", "PYTHONIOENCODING=utf-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	script, scriptW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errHelper, err)
	}
	cmd.ExtraFiles = []*os.File{script}
	started := false
	defer func() {
		script.Close() // the child has its own copy
		if !started {
			scriptW.Close()
		}
	}()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errHelper, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errHelper, err)
	}
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", errHelper, python, err)
	}
	started = true
	go func() {
		// More than a pipe holds: written while the loader reads. A helper that dies
		// first makes the write fail, and the first analysis reports it.
		_, _ = scriptW.WriteString(analyzerScript)
		scriptW.Close()
	}()
	lim := unix.Rlimit{Cur: helperMemoryLimit, Max: helperMemoryLimit}
	_ = unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_AS, &lim, nil)
	return &helper{cmd: cmd, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 64<<10), stderr: stderr}, nil
}

// tailBuffer keeps the last max bytes written to it: the end of a helper's stderr, for
// the error when it dies.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// kill stops the process and reaps it.
func (h *helper) kill() {
	_ = h.cmd.Process.Kill()
	_ = h.stdin.Close()
	_ = h.cmd.Wait()
}

// pool runs up to size helpers; each analysis takes one for itself. Sessions share the
// helpers fairly (see fairSlots): one session's slow analyses cannot starve the others.
type pool struct {
	python  string
	timeout time.Duration
	slots   *fairSlots
	mu      sync.Mutex
	idle    []*helper
	closed  bool
	// restarts counts helpers replaced after dying or overrunning (for tests and logs).
	restarts int
}

// newPool returns a pool of size helpers where each session may have maxWaiting
// analyses waiting for one.
func newPool(python string, size, maxWaiting int, timeout time.Duration) *pool {
	return &pool{python: python, timeout: timeout, slots: newFairSlots(size, maxWaiting)}
}

// get returns an idle helper or starts one.
func (p *pool) get() (*helper, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: plugin is shutting down", errHelper)
	}
	if n := len(p.idle); n > 0 {
		h := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return h, nil
	}
	p.mu.Unlock()
	return startHelper(p.python)
}

func (p *pool) put(h *helper) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		h.kill()
		return
	}
	p.idle = append(p.idle, h)
}

// close stops every idle helper; helpers in use are stopped when returned.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, h := range p.idle {
		h.kill()
	}
	p.idle = nil
}

// analyze sends code to a helper and waits for its answer, within the pool's timeout
// and ctx; session is the evaluation's session id, whose share of the helpers it
// counts against ("" is a session of its own). A helper that dies is replaced and the
// analysis retried once; one that overruns is killed (the next analysis starts a fresh
// one).
func (p *pool) analyze(ctx context.Context, session, code string) (pyResponse, error) {
	return p.analyzeWithin(ctx, session, code, p.timeout)
}

// analyzeWithin is analyze with its own timeout.
func (p *pool) analyzeWithin(ctx context.Context, session, code string, timeout time.Duration) (pyResponse, error) {
	if err := p.slots.acquire(ctx, session); err != nil {
		return pyResponse{}, err
	}
	defer p.slots.release(session)
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		h, err := p.get()
		if err != nil {
			return pyResponse{}, err
		}
		resp, err := p.ask(ctx, h, code, timeout)
		if err == nil {
			p.put(h)
			return resp, nil
		}
		h.kill()
		if errors.Is(err, errDied) {
			// The process is reaped now, so its stderr is complete: keep its last line.
			msg := h.stderr.String()
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			if msg != "" {
				err = fmt.Errorf("%w (stderr: %q)", err, msg)
			}
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		lastErr = err
		if !errors.Is(err, errDied) {
			break // a timeout or cancellation: do not run the same code again
		}
	}
	return pyResponse{}, lastErr
}

// errDied is a helper that exited or broke the protocol.
var errDied = fmt.Errorf("%w: helper process died", errHelper)

// ask runs one request on h.
func (p *pool) ask(ctx context.Context, h *helper, code string, timeout time.Duration) (pyResponse, error) {
	h.next++
	id := h.next
	line, err := json.Marshal(map[string]any{"id": id, "code": code})
	if err != nil {
		return pyResponse{}, fmt.Errorf("encode request: %w", err)
	}
	type result struct {
		resp pyResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		if _, err := h.stdin.Write(append(line, '\n')); err != nil {
			done <- result{err: fmt.Errorf("%w: write: %v", errDied, err)}
			return
		}
		b, err := h.stdout.ReadBytes('\n')
		if err != nil {
			done <- result{err: fmt.Errorf("%w: read: %v", errDied, err)}
			return
		}
		var resp pyResponse
		if err := json.Unmarshal(b, &resp); err != nil || resp.ID == nil || *resp.ID != id {
			done <- result{err: fmt.Errorf("%w: bad answer %.200q", errDied, b)}
			return
		}
		done <- result{resp: resp}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-timer.C:
		return pyResponse{}, fmt.Errorf("%w: analysis took longer than %v (%w); split the code or raise timeout", errHelper, timeout, governance.ErrBeyondLimits)
	case <-ctx.Done():
		return pyResponse{}, ctx.Err()
	}
}

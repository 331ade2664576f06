package crashtest

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/limitgraph/limit/sdk/storage"
)

// Backend names a storage plugin binary and how to configure it.
type Backend struct {
	// Name labels the backend in reports ("bolt").
	Name string `json:"name"`
	// Plugin is the path of the plugin binary.
	Plugin string `json:"plugin"`
	// Env is the plugin process's whole environment.
	Env []string `json:"env"`
	// Config is the plugin's config block as JSON; nil means "{}".
	Config json.RawMessage `json:"config"`
	// DataDir is the data directory the plugin is given.
	DataDir string `json:"data_dir"`
}

// Command is how to start the writer process: a binary that runs WriterMain when
// WriterEnv is set (Run sets it).
type Command struct {
	Path string
	Args []string
	// Env is added to the writer's environment.
	Env []string
}

// Options tune a run.
type Options struct {
	// Kills is the number of rounds, each ending in a SIGKILL; 0 means 100.
	Kills int
	// MaxDelay bounds the random time a round writes before its kill; 0 means 150ms.
	MaxDelay time.Duration
	// Writers is the number of goroutines writing in the writer process; 0 means 4.
	Writers int
	// FullEvery makes every FullEvery-th round check the whole namespace instead of the
	// previous round's keys; 0 means 10.
	FullEvery int
	// Seed makes the run's random choices repeatable; 0 picks one (reported).
	Seed uint64
	// Namespace is where the run writes; "" means a fresh random one. The harness deletes
	// its keys at the end of a run that passed.
	Namespace string
	// Writer starts the writer process.
	Writer Command
	// WorkDir holds the job files; "" means a temporary directory.
	WorkDir string
	// Logf, if set, receives a line per round.
	Logf func(format string, args ...any)
}

// Report tells what a run did.
type Report struct {
	Backend string
	Seed    uint64
	// Kills is the number of SIGKILLs sent: to the plugin process or to the writer (the
	// host), whose death takes the plugin with it.
	Kills, PluginKills, WriterKills int
	// Acks is the number of writes acknowledged over the run.
	Acks int
	// Checks counts verifications before a round's writes (Full of them over the whole
	// namespace), plus the final one in the harness.
	Checks, FullChecks int
	// Unacked is the number of writes found at the end that landed without their
	// acknowledgement (in flight at a kill).
	Unacked int
	// Items and Bytes are what the final check read; OtherItems is how many of the keys
	// batches put in OtherNamespace (none where the backend lacks batch:namespaces).
	Items, OtherItems int
	Bytes             int64
	// Elapsed is the run's wall time.
	Elapsed time.Duration
}

// String renders the report on one line.
func (r Report) String() string {
	return fmt.Sprintf("%s: %d kills (%d plugin, %d writer) in %v, %d acknowledged writes, %d checks (%d full), final: %d keys (%d in the second namespace), %.1f MiB, %d unacknowledged writes landed whole; seed %d",
		r.Backend, r.Kills, r.PluginKills, r.WriterKills, r.Elapsed.Round(time.Millisecond), r.Acks, r.Checks, r.FullChecks,
		r.Items, r.OtherItems, float64(r.Bytes)/(1<<20), r.Unacked, r.Seed)
}

// ViolationError is a run's failure because the store broke a promise.
type ViolationError struct {
	Round      int
	Violations []string
}

func (e *ViolationError) Error() string {
	return fmt.Sprintf("round %d: the store broke its promises:\n  %s", e.Round, strings.Join(e.Violations, "\n  "))
}

// roundWait bounds each wait of a round: for the writer to report, and for processes to
// end after a kill.
const roundWait = 60 * time.Second

// Run kills the writer or the plugin o.Kills times at random moments, checking the store
// before every round's writes and once more at the end from this process. It returns a
// *ViolationError when the store lost or damaged anything it acknowledged, another error
// when the run itself could not go on.
func Run(ctx context.Context, b Backend, o Options) (rep Report, err error) {
	start := time.Now()
	if o.Kills <= 0 {
		o.Kills = 100
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 150 * time.Millisecond
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
	if o.FullEvery <= 0 {
		o.FullEvery = 10
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.Namespace == "" {
		var r [6]byte
		_, _ = crand.Read(r[:])
		o.Namespace = "crashtest-" + hex.EncodeToString(r[:])
	}
	if o.Writer.Path == "" {
		return rep, errors.New("crashtest: Options.Writer.Path is empty")
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "crashtest-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(dir)
		o.WorkDir = dir
	}
	if err := becomeSubreaper(); err != nil {
		return rep, fmt.Errorf("crashtest: %w", err)
	}
	rep = Report{Backend: b.Name, Seed: o.Seed}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6c696d6974))
	ledger := NewLedger()

	for round := 0; round < o.Kills; round++ {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		j := job{Backend: b, Namespace: o.Namespace, Round: round, Writers: o.Writers, Seed: o.Seed, Ledger: ledger, MaxRun: roundWait}
		switch {
		case round == 0:
		case round%o.FullEvery == 0:
			j.VerifyAll = true
		default:
			j.Verify = []int{round - 1}
		}
		delay := time.Duration(rng.Int64N(int64(o.MaxDelay) + 1))
		killPlugin := rng.IntN(2) == 0
		rr, err := runRound(ctx, o, j, delay, killPlugin)
		if err != nil {
			return rep, err
		}
		for _, line := range rr.acks {
			if err := ledger.Apply(round, line); err != nil {
				return rep, fmt.Errorf("round %d: %w", round, err)
			}
		}
		if rr.verified {
			rep.Checks++
			if j.VerifyAll {
				rep.FullChecks++
			}
		}
		rep.Kills++
		if killPlugin {
			rep.PluginKills++
		} else {
			rep.WriterKills++
		}
		target := "writer"
		if killPlugin {
			target = "plugin"
		}
		logf("%s round %d: start %v, killed the %s after %v, gone after %v; %d acknowledgements; check before: %s", b.Name, round,
			rr.startup.Round(time.Millisecond), target, delay.Round(time.Millisecond), rr.teardown.Round(time.Millisecond), len(rr.acks), rr.check)
	}

	// The last check runs here, in a process the kills never touched.
	s, _, stop, err := launch(ctx, b)
	if err != nil {
		return rep, fmt.Errorf("final check: %w", err)
	}
	defer stop()
	c, err := ledger.Verify(ctx, s, o.Namespace, nil)
	if err != nil {
		return rep, fmt.Errorf("final check: %w", err)
	}
	rep.Checks++
	rep.FullChecks++
	rep.Acks = ledger.Acks()
	rep.Items, rep.OtherItems, rep.Bytes, rep.Unacked = c.Items, c.OtherItems, c.Bytes, c.Unacked
	rep.Elapsed = time.Since(start)
	if len(c.Violations) > 0 {
		return rep, &ViolationError{Round: o.Kills, Violations: c.Violations}
	}
	for _, ns := range []string{o.Namespace, OtherNamespace(o.Namespace)} {
		if err := clearNamespace(ctx, s, ns); err != nil {
			return rep, fmt.Errorf("clean up namespace %s: %w", ns, err)
		}
	}
	return rep, nil
}

// roundResult is what one round's writer said.
type roundResult struct {
	acks     []string
	verified bool
	check    string
	// startup is the time from starting the writer to its first write (plugin start,
	// configure, check); teardown from the kill until both processes were gone.
	startup, teardown time.Duration
}

// runRound starts a writer for j, waits until it writes, lets it write for delay, kills
// the plugin or the writer, and waits until both processes are gone.
func runRound(ctx context.Context, o Options, j job, delay time.Duration, killPlugin bool) (roundResult, error) {
	var rr roundResult
	jobPath := filepath.Join(o.WorkDir, "job.json")
	raw, err := json.Marshal(j)
	if err != nil {
		return rr, err
	}
	if err := os.WriteFile(jobPath, raw, 0o600); err != nil {
		return rr, err
	}
	cmd := exec.CommandContext(ctx, o.Writer.Path, o.Writer.Args...)
	cmd.Env = append(append(os.Environ(), o.Writer.Env...), WriterEnv+"="+jobPath)
	cmd.Stderr = io.Discard
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return rr, err
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return rr, fmt.Errorf("round %d: start the writer: %w", j.Round, err)
	}
	writerPID := cmd.Process.Pid
	lines := make(chan string, 1024)
	go readLines(stdout, lines)
	waited := make(chan error, 1)
	stopWriter := func() {
		_ = cmd.Process.Kill()
	}
	pluginPID := 0
	fail := func(format string, args ...any) (roundResult, error) {
		stopWriter()
		for range lines {
		}
		_ = cmd.Wait()
		if pluginPID > 0 {
			_ = syscall.Kill(pluginPID, syscall.SIGKILL)
			_ = waitGone(pluginPID, roundWait)
		}
		return rr, fmt.Errorf("round %d: %s", j.Round, fmt.Sprintf(format, args...))
	}

	// Until "writing": the plugin's pid, the check's outcome.
	var violations []string
	timeout := time.After(roundWait)
	for writing := false; !writing; {
		select {
		case line, ok := <-lines:
			if !ok {
				if len(violations) > 0 {
					stopWriter()
					_ = cmd.Wait()
					if pluginPID > 0 {
						_ = waitGone(pluginPID, roundWait)
					}
					return rr, &ViolationError{Round: j.Round, Violations: violations}
				}
				return fail("the writer ended before writing (%s)", lastError(rr.check))
			}
			word, rest, _ := strings.Cut(line, " ")
			switch word {
			case linePID:
				if pluginPID, err = strconv.Atoi(rest); err != nil {
					return fail("bad line %q", line)
				}
			case lineVerified:
				rr.verified, rr.check = true, rest
			case lineViolation:
				violations = append(violations, rest)
			case lineError:
				rr.check = line
			case lineWriting:
				writing = true
			}
		case <-timeout:
			return fail("the writer did not start writing within %v", roundWait)
		}
	}
	if rr.check == "" {
		rr.check = "none"
	}
	rr.startup = time.Since(started)

	// Write for delay, collecting acknowledgements, then kill.
	var extra []string
	collect := func(line string) {
		word, _, _ := strings.Cut(line, " ")
		switch word {
		case ackPut, ackBatch, ackIntentDel, ackDel, ackVersion:
			rr.acks = append(rr.acks, line)
		case lineViolation:
			violations = append(violations, strings.TrimPrefix(line, lineViolation+" "))
		default:
			extra = append(extra, line)
		}
	}
	kill := time.After(delay)
	var killedAt time.Time
	for killed := false; !killed; {
		select {
		case line, ok := <-lines:
			if !ok {
				// The writer ended by itself: every goroutine failed, or a violation.
				killed = true
				break
			}
			collect(line)
		case <-kill:
			victim := writerPID
			if killPlugin {
				victim = pluginPID
			}
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fail("kill %d: %v", victim, err)
			}
			killed = true
		}
	}
	killedAt = time.Now()
	// The writer exits by itself once its plugin is gone; make sure it does.
	go func() {
		select {
		case <-time.After(roundWait):
			stopWriter()
		case <-waited:
		}
	}()
	for line := range lines {
		collect(line)
	}
	werr := cmd.Wait()
	waited <- werr
	if pluginPID > 0 {
		if err := waitGone(pluginPID, roundWait); err != nil {
			return rr, fmt.Errorf("round %d: %w", j.Round, err)
		}
	}
	rr.teardown = time.Since(killedAt)
	if len(violations) > 0 {
		return rr, &ViolationError{Round: j.Round, Violations: violations}
	}
	if code := exitCode(werr); code == exitSetup || code == exitTimeout {
		return rr, fmt.Errorf("round %d: the writer failed (exit %d): %s", j.Round, code, lastError(strings.Join(extra, "; ")))
	}
	return rr, nil
}

// lastError returns s, or a placeholder when it is empty.
func lastError(s string) string {
	if s == "" {
		return "no message"
	}
	return s
}

// exitCode returns the exit status of a finished command, or -1 when it was killed.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// readLines sends the complete lines of r to ch and closes it at EOF; a last line without
// its newline (cut by a kill) is dropped.
func readLines(r io.Reader, ch chan<- string) {
	defer close(ch)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		ch <- strings.TrimSuffix(line, "\n")
	}
}

// clearNamespace deletes every key of ns.
func clearNamespace(ctx context.Context, s storage.Storage, ns string) error {
	for {
		res, err := s.Scan(ctx, storage.ScanRequest{Namespace: ns, Limit: storage.MaxScanLimit, KeysOnly: true})
		if err != nil {
			return err
		}
		if len(res.Items) == 0 {
			return nil
		}
		ops := make([]storage.Op, len(res.Items))
		for i, kv := range res.Items {
			ops[i] = storage.Op{Kind: storage.OpDelete, Key: kv.Key}
		}
		if err := s.Batch(ctx, ns, ops); err != nil {
			return err
		}
	}
}

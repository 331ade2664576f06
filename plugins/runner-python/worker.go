package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/sdk/runner"
)

// startTimeout bounds how long a worker may take from spawn to its ready frame.
const startTimeout = 15 * time.Second

// worker is one sandboxed interpreter: init (the plugin re-executed inside the new
// namespaces) and its child, the Python worker. A worker that dies or is killed is never
// reused: the runner starts a fresh one.
type worker struct {
	sb     *sandbox
	log    hclog.Logger
	cmd    *exec.Cmd
	flags  uintptr
	rep    *report
	pyPID  int // the Python process, as the plugin sees it
	pidfd  int // a pidfd of the Python process, -1 if none
	mem    *memProbe
	python string

	cmdW  *os.File // commands to init
	ctlW  *os.File // frames to the worker
	stW   *os.File // status frames from init (read end)
	ctlR  int      // frames from the worker (raw, non-blocking)
	outR  int      // the worker's stdout (raw, non-blocking)
	errR  int      // the worker's stderr (raw, non-blocking)
	ready chan frame

	mu  sync.Mutex
	cur *execution
	// exitFrame is init's report of how the worker ended, if it sent one.
	exitFrame *frame
	// protoErr is set when the worker broke the frame protocol.
	protoErr error

	killOnce sync.Once
	// sessionClosed is set before the session's close kills the worker, so an execution
	// it cuts short says so rather than blaming its code.
	sessionClosed atomic.Bool
	loopDone      chan struct{}
	waitDone      chan struct{}
	statDone      chan struct{}
	dead          chan struct{}

	// resetPending and busy are guarded by the runner's mutex.
	resetPending bool
	busy         bool

	// diskDev is the loop device of the session's image ("" without one), and diskErrs
	// its filesystem's error count when mounted: a count above it means the filesystem
	// broke (diskBroken). diskNote, until the first execution takes it, says what e2fsck
	// repaired before the mount.
	diskDev  string
	diskErrs int64
	diskNote atomic.Pointer[string]

	// timing is how long each step of the start took.
	timing startTiming
	// self is the executable init runs, and wantFlags the namespaces asked for (flags
	// are those init got).
	self      string
	wantFlags uintptr
}

// startTiming splits a worker's start into its steps, for the debug log and benchmarks.
type startTiming struct {
	// Spawn is creating the pipes and starting init in its namespaces.
	Spawn time.Duration
	// Config is sending init its configuration.
	Config time.Duration
	// Setup is waiting for init's setup report (cgroups, mounts, Landlock, seccomp,
	// rlimits, fork of the interpreter).
	Setup time.Duration
	// Verify is checking the worker from outside, while its interpreter starts.
	Verify time.Duration
	// Ready is waiting for the interpreter's ready frame (its start-up and imports).
	Ready time.Duration
}

// total is the whole start.
func (t startTiming) total() time.Duration { return t.Spawn + t.Config + t.Setup + t.Verify + t.Ready }

// loopEvent is what the I/O loop hands an execution: output, or its done frame.
type loopEvent struct {
	stream runner.Stream
	data   []byte
	done   *frame
}

// execution is one Execute call as the worker and Cancel see it.
type execution struct {
	id         string
	events     chan loopEvent
	abandon    chan struct{}
	cancel     chan struct{}
	cancelOnce sync.Once
}

func newExecution(id string) *execution {
	return &execution{id: id, events: make(chan loopEvent, 64), abandon: make(chan struct{}), cancel: make(chan struct{})}
}

// requestCancel marks the execution cancelled; it is safe to call more than once.
func (e *execution) requestCancel() { e.cancelOnce.Do(func() { close(e.cancel) }) }

// pipePair is a pipe whose child end is blocking and whose parent end is non-blocking.
type pipePair struct {
	child  *os.File
	parent int
}

// newPipe makes a pipe; childReads tells which end the child gets.
func newPipe(childReads bool) (pipePair, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return pipePair{}, fmt.Errorf("pipe: %w", err)
	}
	c, par := p[1], p[0]
	if childReads {
		c, par = p[0], p[1]
	}
	if err := unix.SetNonblock(par, true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return pipePair{}, err
	}
	return pipePair{child: os.NewFile(uintptr(c), "sandbox-pipe"), parent: par}, nil
}

// startWorker starts a sandboxed worker and returns it once the interpreter is ready, its
// isolation checked from outside.
func startWorker(ctx context.Context, sb *sandbox, log hclog.Logger) (*worker, error) {
	return startWorkerFrom(ctx, sb, log, nil)
}

// startWorkerFrom is startWorker with an init spawned ahead by spawnInit, used when it
// is still waiting and was started in the namespaces sb needs (the kernel gave it all it
// asked for); otherwise it is discarded and a fresh init spawned.
func startWorkerFrom(ctx context.Context, sb *sandbox, log hclog.Logger, pre *worker) (*worker, error) {
	t0 := time.Now()
	w := pre
	if w != nil && (w.wantFlags != sb.flags || w.flags != w.wantFlags || w.self != sb.self || w.exited()) {
		w.discard()
		w = nil
	}
	if w == nil {
		var err error
		if w, err = spawnInit(sb.self, sb.flags, sb.cover != "", log); err != nil {
			return nil, err
		}
	}
	w.sb, w.log = sb, log
	rep := newReport()
	rep.merge(sb.static.entries())
	rep.merge(w.rep.entries()) // the namespaces the kernel refused, if it did
	w.rep = rep
	t1 := time.Now()
	w.timing.Spawn = t1.Sub(t0)
	running := false // the reading goroutines run, so the pipes close only once they end
	fail := func(err error) (*worker, error) {
		w.kill()
		if running {
			<-w.dead
		} else {
			<-w.waitDone
		}
		w.closeFds()
		return nil, err
	}
	// init joins the cgroups, sets itself up and starts the worker; a failed write means
	// init is gone, and its status pipe says why.
	raw, _ := json.Marshal(sb.initConfig(w.flags))
	if _, err := w.cmdW.Write(encodeFrame(frameConfig, field{keyJSON, raw})); err != nil {
		return fail(fmt.Errorf("send the sandbox its configuration: %w", err))
	}
	t2 := time.Now()
	w.timing.Config = t2.Sub(t1)
	_ = w.stW.SetReadDeadline(time.Now().Add(startTimeout))
	f, err := readFrame(w.stW)
	_ = w.stW.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		return fail(fmt.Errorf("the sandbox did not report its setup: %w", err))
	case f.typ == frameFatal:
		return fail(fmt.Errorf("set up the sandbox: %s", f.str(keyError)))
	case f.typ != frameSetup:
		return fail(fmt.Errorf("the sandbox sent frame %q instead of its setup report", f.typ))
	}
	var setup initSetup
	if err := json.Unmarshal(f.fields[keyJSON], &setup); err != nil {
		return fail(fmt.Errorf("decode the sandbox's setup report: %w", err))
	}
	w.rep.merge(setup.Features)
	if setup.DiskDevice != "" && w.rep.enforced(featDisk) {
		w.diskDev = setup.DiskDevice
		w.diskErrs, _ = diskErrorCount(w.diskDev)
	}
	if setup.DiskRepair != "" {
		log.Warn("the session's disk image had recorded errors and was checked before it was mounted", "image", sb.disk.path, "repair", setup.DiskRepair)
		note := fmt.Sprintf(diskRepairNote, setup.DiskRepair)
		w.diskNote.Store(&note)
	}
	sb.cg.joined(w.rep)
	sb.diskStarted(w.rep)
	t3 := time.Now()
	w.timing.Setup = t3.Sub(t2)

	running = true
	go w.readStatus()
	go w.loop()
	go func() {
		<-w.loopDone
		<-w.waitDone
		<-w.statDone
		close(w.dead)
	}()

	// init sends its report once the interpreter is exec'd: its uid, namespaces, limits,
	// seccomp mode and cgroups are checked while it starts up.
	check := func() error {
		kids := children(w.cmd.Process.Pid)
		if len(kids) != 1 {
			return fmt.Errorf("the sandbox's init has %d children, expected the worker alone", len(kids))
		}
		w.pyPID = kids[0]
		var err error
		if w.pidfd, err = unix.PidfdOpen(w.pyPID, 0); err != nil {
			return fmt.Errorf("open a pidfd of the Python worker: %w", err)
		}
		w.mem = openMemProbe(w.pyPID, sb.cg)
		w.verify()
		w.verifyDisk()
		return nil
	}
	checkErr := check()
	t4 := time.Now()
	w.timing.Verify = t4.Sub(t3)

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var ready frame
	select {
	case ready = <-w.ready:
	case <-w.dead:
		return fail(fmt.Errorf("the Python worker exited during start-up: %s", w.exitDescription()))
	case <-timer.C:
		return fail(fmt.Errorf("the Python worker did not start within %s", startTimeout))
	case <-ctx.Done():
		return fail(fmt.Errorf("start the Python worker: %w", ctx.Err()))
	}
	w.python = ready.str(keyVersion)
	w.timing.Ready = time.Since(t4)
	if checkErr != nil {
		return fail(checkErr)
	}
	w.verifyLimits()
	if missing := unknownFeatures(w.rep, sb.set.require); missing != "" {
		return fail(fmt.Errorf("required isolation is not enforced on this machine: %s", missing))
	}
	if sb.enforceBaseline {
		if missing := unknownFeatures(w.rep, sb.baseline); missing != "" {
			return fail(fmt.Errorf("refused: the sandbox would not keep the code from the host and the API, for want of %s; %s", missing, weakIsolationFix))
		}
	}
	log.Debug("worker started", "pid", w.pyPID, "total", w.timing.total().String(), "spawn", w.timing.Spawn.String(),
		"config", w.timing.Config.String(), "setup", w.timing.Setup.String(), "ready", w.timing.Ready.String(), "verify", w.timing.Verify.String())
	return w, nil
}

// spawnInit creates the pipes and starts init (the plugin re-executed) in the namespaces
// flags asks for, falling back to none when the kernel refuses them; init then waits for
// its sandbox's configuration. needMountNS says the sandbox cannot work without a mount
// namespace. The worker it returns belongs to no sandbox yet.
func spawnInit(self string, flags uintptr, needMountNS bool, log hclog.Logger) (*worker, error) {
	w := &worker{
		log: log, self: self, wantFlags: flags, flags: flags, rep: newReport(),
		ready: make(chan frame, 1), ctlR: -1, outR: -1, errR: -1, pidfd: -1,
		loopDone: make(chan struct{}), waitDone: make(chan struct{}), statDone: make(chan struct{}), dead: make(chan struct{}),
	}
	var pipes [6]pipePair
	spec := []bool{true, false, false, false, true, false} // cmd, status, out, err, ctl-in, ctl-out
	for i, childReads := range spec {
		p, err := newPipe(childReads)
		if err != nil {
			for _, q := range pipes[:i] {
				q.child.Close()
				unix.Close(q.parent)
			}
			return nil, err
		}
		pipes[i] = p
	}
	w.cmdW = os.NewFile(uintptr(pipes[0].parent), "init-cmd")
	w.stW = os.NewFile(uintptr(pipes[1].parent), "init-status")
	w.outR, w.errR = pipes[2].parent, pipes[3].parent
	w.ctlW = os.NewFile(uintptr(pipes[4].parent), "worker-ctl")
	w.ctlR = pipes[5].parent
	childEnds := make([]*os.File, len(pipes))
	for i, p := range pipes {
		childEnds[i] = p.child
	}
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()

	if err := w.spawn(childEnds, needMountNS); err != nil {
		w.closeFds()
		return nil, err
	}
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil
	go func() {
		_ = w.cmd.Wait()
		close(w.waitDone)
	}()
	return w, nil
}

// exited reports whether init has ended.
func (w *worker) exited() bool {
	select {
	case <-w.waitDone:
		return true
	default:
		return false
	}
}

// discard ends an init spawned ahead that no sandbox took: it never started a worker.
func (w *worker) discard() {
	if w.cmd.Process != nil {
		_ = w.cmd.Process.Kill()
	}
	<-w.waitDone
	w.closeFds()
}

// spawn starts init in the namespaces, falling back to none when the kernel refuses them
// (not root, no user namespaces): the report then says so for each.
func (w *worker) spawn(files []*os.File, needMountNS bool) error {
	start := func(flags uintptr) (*exec.Cmd, error) {
		cmd := exec.Command(w.self, initArg)
		// init's whole environment: nothing of the plugin's (secrets stay out of the sandbox).
		cmd.Env = []string{"GOMAXPROCS=1"}
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		cmd.ExtraFiles = files
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
		return cmd, cmd.Start()
	}
	cmd, err := start(w.flags)
	if err != nil && w.flags != 0 {
		reason := fmt.Sprintf("the kernel refused to create namespaces: %v", err)
		for _, n := range []struct {
			feat string
			flag uintptr
		}{{featPIDNS, unix.CLONE_NEWPID}, {featMountNS, unix.CLONE_NEWNS}, {featIPCNS, unix.CLONE_NEWIPC}, {featUTSNS, unix.CLONE_NEWUTS}, {featNetNS, unix.CLONE_NEWNET}} {
			if w.flags&n.flag != 0 {
				w.rep.fail(n.feat, reason)
			}
		}
		w.log.Warn("starting the sandbox without namespaces", "error", err)
		w.flags = 0
		if needMountNS {
			return fmt.Errorf("start the sandbox: %s, and without a mount namespace the sandbox uid cannot reach the work dir", reason)
		}
		cmd, err = start(0)
	}
	if err != nil {
		return fmt.Errorf("start the sandbox (%s %s): %w", w.self, initArg, err)
	}
	w.cmd = cmd
	return nil
}

// verify checks the running worker from outside, through /proc: its namespaces differ
// from the plugin's, its uid, seccomp mode and cgroups are what was set (verifyLimits
// checks its resource limits).
func (w *worker) verify() {
	pid := w.pyPID
	for _, n := range []struct {
		feat, ns string
		flag     uintptr
	}{
		{featPIDNS, "pid", unix.CLONE_NEWPID}, {featMountNS, "mnt", unix.CLONE_NEWNS},
		{featIPCNS, "ipc", unix.CLONE_NEWIPC}, {featUTSNS, "uts", unix.CLONE_NEWUTS},
		{featNetNS, "net", unix.CLONE_NEWNET},
	} {
		if w.flags&n.flag == 0 {
			continue
		}
		mine, err1 := os.Readlink("/proc/self/ns/" + n.ns)
		theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, n.ns))
		switch {
		case err1 != nil || err2 != nil:
			w.rep.fail(n.feat, fmt.Sprintf("cannot compare %s namespaces: %v %v", n.ns, err1, err2))
		case mine == theirs:
			w.rep.fail(n.feat, "the worker shares the plugin's "+n.ns+" namespace")
		default:
			w.pass(n.feat, "own "+n.ns+" namespace ("+theirs+")")
		}
	}
	status := fmt.Sprintf("/proc/%d/status", pid)
	if w.sb.uid >= 0 {
		uids, err := procStatusField(status, "Uid")
		want := strings.Repeat(strconv.Itoa(w.sb.uid)+" ", 4)
		if err != nil || strings.Join(strings.Fields(uids), " ")+" " != want {
			w.rep.fail(featUID, fmt.Sprintf("the worker's uids are %q (%v), expected %d", uids, err, w.sb.uid))
		}
	}
	if w.rep.enforced(featSeccomp) {
		if mode, err := procStatusField(status, "Seccomp"); err != nil || mode != "2" {
			w.rep.fail(featSeccomp, fmt.Sprintf("the worker's seccomp mode is %q (%v), expected 2 (filter)", mode, err))
		}
	}
	if len(w.sb.cg.dirs) > 0 {
		own, err := cgroupsOf(pid)
		for ctrl, dir := range w.sb.cg.dirs {
			if err != nil || own[ctrl] == "/" || !strings.HasSuffix(dir, own[ctrl]) {
				w.rep.fail(controllerFeatures[ctrl], fmt.Sprintf("the worker is not in %s (%v)", dir, err))
			}
		}
	}
}

// verifyLimits checks the worker's resource limits, once it is ready: without a memory
// cgroup the worker sets its address-space limit itself as it starts.
func (w *worker) verifyLimits() {
	pid := w.pyPID
	if w.rep.enforced(featRlimits) {
		want := w.sb.initConfig(w.flags).Rlimits
		if _, ok := w.sb.cg.dirs["memory"]; !ok {
			want = append(want, rlimitSpec{"RLIMIT_AS", unix.RLIMIT_AS, w.sb.limits.MemoryBytes})
		}
		if err := checkLimits(pid, want); err != nil {
			w.rep.fail(featRlimits, err.Error())
		} else if len(want) > len(w.sb.initConfig(w.flags).Rlimits) {
			f := w.rep.get(featRlimits)
			w.rep.set(featRlimits, true, f.Detail+fmt.Sprintf(" RLIMIT_AS=%d (no memory cgroup)", w.sb.limits.MemoryBytes))
		}
	}
}

// pass records a check that succeeded unless the feature already has an entry.
func (w *worker) pass(name, detail string) {
	if w.rep.get(name) == nil {
		w.rep.set(name, true, detail)
	}
}

// limitNames are the /proc/<pid>/limits rows of the limits the sandbox sets.
var limitNames = map[int]string{
	unix.RLIMIT_NPROC: "Max processes", unix.RLIMIT_FSIZE: "Max file size", unix.RLIMIT_NOFILE: "Max open files",
	unix.RLIMIT_CORE: "Max core file size", unix.RLIMIT_AS: "Max address space",
}

// checkLimits compares a process's limits with what was set.
func checkLimits(pid int, want []rlimitSpec) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return err
	}
	defer f.Close()
	rows := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 26 {
			rows[strings.TrimSpace(line[:26])] = strings.Fields(line[26:])
		}
	}
	for _, l := range want {
		row := rows[limitNames[l.Resource]]
		ok := len(row) >= 2
		for i := 0; ok && i < 2; i++ {
			n, err := strconv.ParseUint(row[i], 10, 64)
			ok = err == nil && n <= l.Value
		}
		if !ok {
			return fmt.Errorf("the worker's %s is %v, expected at most %d", l.Name, row, l.Value)
		}
	}
	return nil
}

// readStatus reads init's frames after its setup report: how the worker ended.
func (w *worker) readStatus() {
	defer close(w.statDone)
	for {
		f, err := readFrame(w.stW)
		if err != nil {
			return
		}
		if f.typ == frameExit || f.typ == frameFatal {
			w.mu.Lock()
			w.exitFrame = &f
			w.mu.Unlock()
		}
	}
}

// outStream is one of the worker's output pipes in the I/O loop.
type outStream struct {
	fd     int
	stream runner.Stream
	open   bool
}

// loop reads the worker's stdout, stderr and frames in one goroutine with poll(2), so the
// output written before a frame is always delivered before it: when a done frame arrives
// both output pipes are read empty first.
func (w *worker) loop() {
	defer close(w.loopDone)
	outs := []*outStream{{w.outR, runner.Stdout, true}, {w.errR, runner.Stderr, true}}
	fds := []unix.PollFd{
		{Fd: int32(w.ctlR), Events: unix.POLLIN},
		{Fd: int32(w.outR), Events: unix.POLLIN},
		{Fd: int32(w.errR), Events: unix.POLLIN},
	}
	buf := make([]byte, runner.MaxChunkSize)
	var pending []byte
	ctlOpen := true
	for ctlOpen || outs[0].open || outs[1].open {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.log.Error("poll the worker's pipes", "error", err)
			w.kill()
			return
		}
		for i, o := range outs {
			if fds[i+1].Revents != 0 {
				w.readOutput(o, buf, false)
				if !o.open {
					fds[i+1].Fd = -1
				}
			}
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(w.ctlR, buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			for {
				f, rest, ok, perr := splitFrame(pending)
				if perr != nil {
					w.protocolError(perr)
					pending = nil
					break
				}
				if !ok {
					break
				}
				pending = rest
				for i, o := range outs {
					w.readOutput(o, buf, true)
					if !o.open {
						fds[i+1].Fd = -1
					}
				}
				w.deliver(f)
			}
		}
		if n == 0 || (err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR)) {
			ctlOpen = false
			fds[0].Fd = -1
		}
	}
}

// readOutput reads a pipe once, or until it is empty with drain, and hands the data on.
func (w *worker) readOutput(o *outStream, buf []byte, drain bool) {
	for o.open {
		n, err := unix.Read(o.fd, buf)
		if n > 0 {
			w.output(o.stream, append([]byte(nil), buf[:n]...))
		}
		if n == 0 || (err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR)) {
			o.open = false
			return
		}
		if err != nil || !drain {
			return
		}
	}
}

// output hands a chunk to the running execution; output while none runs is dropped.
func (w *worker) output(s runner.Stream, data []byte) {
	w.mu.Lock()
	ex := w.cur
	w.mu.Unlock()
	if ex == nil {
		return
	}
	select {
	case ex.events <- loopEvent{stream: s, data: data}:
	case <-ex.abandon:
	}
}

// deliver acts on a frame from the worker.
func (w *worker) deliver(f frame) {
	switch f.typ {
	case frameReady:
		select {
		case w.ready <- f:
		default:
		}
	case frameDone:
		w.mu.Lock()
		ex := w.cur
		// An empty id is the worker's report of a failure of its own (out of memory before
		// it could read the id): it ends whatever execution runs.
		if id := f.str(keyID); ex != nil && (ex.id == id || id == "") {
			w.cur = nil
		} else {
			ex = nil
		}
		w.mu.Unlock()
		if ex != nil {
			select {
			case ex.events <- loopEvent{done: &f}:
			case <-ex.abandon:
			}
		}
	}
}

// protocolError kills a worker whose frames cannot be parsed: the sandboxed code wrote to
// the protocol pipe.
func (w *worker) protocolError(err error) {
	w.mu.Lock()
	if w.protoErr == nil {
		w.protoErr = err
	}
	w.mu.Unlock()
	w.log.Warn("the Python worker broke the frame protocol; killing it", "error", err)
	w.kill()
}

// interrupt sends SIGINT to the worker's process group (so a child it waits for stops
// too), through a pidfd, so a recycled pid can never be hit. Kernels before 6.9 cannot
// signal a group through a pidfd: there the worker alone gets it.
func (w *worker) interrupt() {
	if w.pidfd < 0 {
		return
	}
	err := unix.PidfdSendSignal(w.pidfd, unix.SIGINT, nil, unix.PIDFD_SIGNAL_PROCESS_GROUP)
	if errors.Is(err, unix.EINVAL) {
		err = unix.PidfdSendSignal(w.pidfd, unix.SIGINT, nil, 0)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		w.log.Warn("interrupt the Python worker", "error", err)
	}
}

// kill takes the whole sandbox down: killing init, the first process of the pid
// namespace, makes the kernel kill every process in it. Without a pid namespace, the
// processes left in the session's cgroups are killed one by one.
func (w *worker) kill() {
	w.killOnce.Do(func() {
		if w.flags&unix.CLONE_NEWPID == 0 && w.pidfd >= 0 {
			// Without a pid namespace init's death does not take the tree down: kill the
			// worker's process group first.
			_ = unix.PidfdSendSignal(w.pidfd, unix.SIGKILL, nil, unix.PIDFD_SIGNAL_PROCESS_GROUP)
		}
		if w.cmd != nil && w.cmd.Process != nil {
			_ = w.cmd.Process.Kill()
		}
		if w.flags&unix.CLONE_NEWPID == 0 {
			go func() {
				if w.cmd != nil {
					<-w.waitDone
				}
				if !w.sb.cg.killAll(5 * time.Second) {
					w.log.Error("processes of the sandbox survived being killed", "pids", w.sb.cg.procs())
				}
			}()
		}
	})
}

// killStrays kills every process in the worker's process group but the worker itself,
// until none is left. Each is signalled through a pidfd opened before its group is
// checked, so a recycled pid is never hit. A zombie (an exited child the worker has not
// waited for, which Python never does by itself) is skipped: it runs nothing, a signal
// cannot remove it, and counting it would keep the loop going for all its rounds.
func (w *worker) killStrays() {
	var killed []int // the live processes signalled, each once
	for round := 0; round < 50; round++ {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		live := 0
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == w.pyPID {
				continue
			}
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue
			}
			if st, pgrp := procStat(pid); pgrp == w.pyPID && st != 'Z' && st != 'X' {
				if unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
					live++
					if !slices.Contains(killed, pid) {
						killed = append(killed, pid)
					}
				}
			}
			unix.Close(fd)
		}
		if live == 0 {
			if len(killed) > 0 {
				w.log.Debug("killed the processes an interrupted execution left", "pids", killed, "rounds", round+1)
			}
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	w.log.Warn("processes of an interrupted execution keep appearing", "pids", killed)
}

// procStat reads a process's state ('R', 'S', 'Z', ...) and group id from
// /proc/<pid>/stat, or 0 and -1.
func procStat(pid int) (state byte, pgrp int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, -1
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, -1
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, -1
	}
	return f[0][0], n
}

// stop kills the worker and waits (up to timeout) until it is gone.
func (w *worker) stop(timeout time.Duration) error {
	w.kill()
	select {
	case <-w.dead:
		w.closeFds()
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("the sandbox (init pid %d) did not exit within %s of SIGKILL", w.cmd.Process.Pid, timeout)
	}
}

// closeFds closes the plugin's pipe ends; only after the loop has ended.
func (w *worker) closeFds() {
	for _, f := range []*os.File{w.cmdW, w.ctlW, w.stW} {
		if f != nil {
			f.Close()
		}
	}
	if w.mem != nil {
		w.mem.close()
	}
	for _, fd := range []*int{&w.ctlR, &w.outR, &w.errR, &w.pidfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// isDead reports whether the worker is gone.
func (w *worker) isDead() bool {
	select {
	case <-w.dead:
		return true
	default:
		return false
	}
}

// exitDescription says how the worker ended, for error messages.
func (w *worker) exitDescription() string {
	w.mu.Lock()
	f, perr := w.exitFrame, w.protoErr
	w.mu.Unlock()
	switch {
	case perr != nil:
		return "it broke the frame protocol (" + perr.Error() + ")"
	case f == nil:
		return "the sandbox ended without reporting the worker's exit"
	case f.typ == frameFatal:
		return f.str(keyError)
	case f.fields[keySignal] != nil:
		sig := syscall.Signal(f.int(keySignal))
		return fmt.Sprintf("killed by signal %d (%s)", int(sig), sig)
	default:
		return fmt.Sprintf("exited with code %d", f.int(keyExit))
	}
}

// exitCode is the exit status to report for a dead worker: its code, or 128 + signal.
func (w *worker) exitCode() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exitFrame == nil {
		return 137
	}
	if w.exitFrame.fields[keySignal] != nil {
		return 128 + int(w.exitFrame.int(keySignal))
	}
	return int(w.exitFrame.int(keyExit))
}

// memProbe measures peak memory per execution through files kept open for the worker's
// life: its VmHWM (reset through clear_refs) and the memory cgroup's max usage. Opening
// them for every execution would cost more than the rest of the plugin's work.
type memProbe struct {
	status, clearRefs, maxUsage int
	buf                         []byte
}

// openMemProbe opens the files; one that cannot be opened is skipped (-1).
func openMemProbe(pid int, cg *cgroups) *memProbe {
	open := func(path string, flags int) int {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1
		}
		return fd
	}
	m := &memProbe{
		status:    open(fmt.Sprintf("/proc/%d/status", pid), unix.O_RDONLY),
		clearRefs: open(fmt.Sprintf("/proc/%d/clear_refs", pid), unix.O_WRONLY),
		maxUsage:  -1,
		buf:       make([]byte, 4096),
	}
	if dir, ok := cg.dirs["memory"]; ok {
		m.maxUsage = open(filepath.Join(dir, "memory.max_usage_in_bytes"), unix.O_RDWR)
	}
	return m
}

// reset starts a new measurement.
func (m *memProbe) reset() {
	if m.clearRefs >= 0 {
		_, _ = unix.Pwrite(m.clearRefs, []byte("5"), 0)
	}
	if m.maxUsage >= 0 {
		_, _ = unix.Pwrite(m.maxUsage, []byte("0"), 0)
	}
}

// peak returns the worker's peak resident memory since reset, and the sandbox's.
func (m *memProbe) peak() (worker, sandbox uint64) {
	if m.status >= 0 {
		if n, err := unix.Pread(m.status, m.buf, 0); err == nil {
			b := m.buf[:n]
			if i := bytes.Index(b, []byte("VmHWM:")); i >= 0 {
				line := b[i+6:]
				if j := bytes.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				kb, _ := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(line), []byte(" kB"))), 10, 64)
				worker = kb * 1024
			}
		}
	}
	if m.maxUsage >= 0 {
		if n, err := unix.Pread(m.maxUsage, m.buf, 0); err == nil {
			sandbox, _ = strconv.ParseUint(string(bytes.TrimSpace(m.buf[:n])), 10, 64)
		}
	}
	return worker, sandbox
}

func (m *memProbe) close() {
	for _, fd := range []*int{&m.status, &m.clearRefs, &m.maxUsage} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// runRequest is one execution handed to a worker.
type runRequest struct {
	ex      *execution
	code    string
	timeout time.Duration
	grace   time.Duration
	maxOut  uint64
	emit    func(runner.Event) error
	// note, if set, is written to stderr before the code's output: what happened to the
	// session the code should know (its filesystem repaired).
	note string
}

// stopReason says why the plugin interrupted an execution.
type stopReason int

const (
	reasonNone stopReason = iota
	reasonTimeout
	reasonCancel
)

// run executes code on the worker and builds the result. It returns an error only when
// the execution could not be started or its caller went away; anything the code does
// (including killing the worker) is reported in the result.
func (w *worker) run(ctx context.Context, rr runRequest) (runner.Result, error) {
	ex := rr.ex
	defer close(ex.abandon)
	w.mem.reset()
	w.mu.Lock()
	w.cur = ex
	w.mu.Unlock()
	start := time.Now()
	_ = w.ctlW.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.ctlW.Write(encodeFrame(frameExec, field{keyID, []byte(ex.id)}, field{keyCode, []byte(rr.code)})); err != nil {
		w.mu.Lock()
		w.cur = nil
		w.mu.Unlock()
		w.kill()
		return runner.Result{}, fmt.Errorf("send the code to the Python worker (%s): %w", w.exitDescription(), err)
	}

	var (
		out       outputCap
		reason    stopReason
		emitErr   error
		graceC    <-chan time.Time
		overdue   bool // killed for not stopping within the grace
		timeoutC  <-chan time.Time
		ctxDone   = ctx.Done()
		cancelC   = (<-chan struct{})(ex.cancel)
		interrupt = func(r stopReason) {
			if reason != reasonNone {
				return
			}
			reason = r
			w.interrupt()
			graceC = time.After(rr.grace)
		}
	)
	out.max, out.emit = rr.maxOut, rr.emit
	if rr.note != "" {
		if err := out.add(runner.Stderr, []byte(rr.note)); err != nil {
			emitErr = err
			interrupt(reasonCancel)
		}
	}
	timer := time.NewTimer(rr.timeout)
	defer timer.Stop()
	timeoutC = timer.C
	handle := func(ev loopEvent) {
		if emitErr == nil {
			if err := out.add(ev.stream, ev.data); err != nil {
				emitErr = err
				interrupt(reasonCancel)
			}
		}
	}
	for {
		select {
		case ev := <-ex.events:
			if ev.done == nil {
				handle(ev)
				continue
			}
			if reason != reasonNone {
				// What the interrupted execution left running in the worker's process
				// group (a fork bomb that swallows KeyboardInterrupt) goes with it.
				w.killStrays()
			}
			res := w.result(*ev.done, reason, rr)
			res.Duration = time.Since(start)
			res.Usage.Extra["duration_us"] = float64(res.Duration.Microseconds())
			res.Truncated = res.Truncated || out.truncated
			if uint64(len(res.Output)) > rr.maxOut {
				res.Output = strings.ToValidUTF8(res.Output[:rr.maxOut], "") + "…"
				res.Truncated = true
			}
			if emitErr != nil {
				return res, emitErr
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, nil
		case <-timeoutC:
			timeoutC = nil
			interrupt(reasonTimeout)
		case <-cancelC:
			cancelC = nil
			interrupt(reasonCancel)
		case <-ctxDone:
			ctxDone = nil
			interrupt(reasonCancel)
		case <-graceC:
			graceC = nil
			w.log.Warn("interrupted code did not stop; killing the worker", "execution", ex.id, "grace", rr.grace)
			overdue = true
			w.kill()
		case <-w.dead:
			for {
				select {
				case ev := <-ex.events:
					if ev.done == nil {
						handle(ev)
					}
					continue
				default:
				}
				break
			}
			res := w.deathResult(reason, rr, overdue)
			res.Duration = time.Since(start)
			res.Usage.Extra = map[string]float64{"duration_us": float64(res.Duration.Microseconds())}
			res.Truncated = out.truncated
			if emitErr != nil {
				return res, emitErr
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, nil
		}
	}
}

// result turns a done frame into a result.
func (w *worker) result(f frame, reason stopReason, rr runRequest) runner.Result {
	res := runner.Result{Output: strings.ToValidUTF8(f.str(keyValue), "\uFFFD")}
	cpuUS := uint64(f.int(keyCPU))
	res.Usage.CPUTimeMS = cpuUS / 1000
	peak, sbPeak := w.mem.peak()
	res.Usage.PeakMemoryBytes = peak
	res.Usage.Extra = map[string]float64{"cpu_time_us": float64(cpuUS)}
	if sbPeak > 0 {
		res.Usage.Extra["sandbox_peak_memory_bytes"] = float64(sbPeak)
	}
	// The error text is the code's too (an exception's message is anything it likes): it
	// gets max_output_bytes of its own, like the value.
	errText, cut := capError(strings.ToValidUTF8(f.str(keyError), "\uFFFD"), rr.maxOut)
	res.Truncated = cut || f.int(keyCut) != 0
	switch f.str(keyStatus) {
	case "ok":
		res.Status, res.FinishReason = runner.StatusOK, "completed"
	case "exit":
		res.ExitCode = int(f.int(keyExit))
		res.FinishReason = "exit"
		res.Status = runner.StatusOK
		if res.ExitCode != 0 {
			res.Status = runner.StatusError
			res.Error = fmt.Sprintf("SystemExit: %d", res.ExitCode)
		}
	case "interrupted":
		res.ExitCode = 130
		switch reason {
		case reasonTimeout:
			res.Status, res.FinishReason = runner.StatusTimeout, "timeout"
			res.Error = fmt.Sprintf("execution timed out after %s and was interrupted (KeyboardInterrupt); the session's state is kept\n%s", rr.timeout, errText)
		case reasonCancel:
			res.Status, res.FinishReason = runner.StatusCancelled, "cancelled"
			res.Error = "execution cancelled and interrupted (KeyboardInterrupt); the session's state is kept\n" + errText
		default:
			res.Status, res.FinishReason, res.Error = runner.StatusError, "exception", errText
		}
	default:
		res.ExitCode = int(f.int(keyExit))
		res.Status, res.FinishReason, res.Error = runner.StatusError, "exception", errText
		switch {
		case f.str(keyType) == "MemoryError":
			res.Status, res.FinishReason = runner.StatusLimitExceeded, "memory_limit"
			res.Error = fmt.Sprintf("memory limit of %s reached (MemoryError); the session's state is kept\n%s", formatBytes(w.sb.limits.MemoryBytes), errText)
		case f.int(keyErrno) == int64(unix.EFBIG):
			res.Status, res.FinishReason = runner.StatusLimitExceeded, "file_size_limit"
			res.Error = fmt.Sprintf("file size limit of %s reached (max_file_bytes); the session's state is kept\n%s", formatBytes(w.sb.limits.MaxFileBytes), errText)
		}
	}
	return res
}

// deathResult describes an execution during which the worker died or was killed; overdue
// says the execution killed it for not stopping within the grace after its interrupt.
func (w *worker) deathResult(reason stopReason, rr runRequest, overdue bool) runner.Result {
	res := runner.Result{StateReset: true, ExitCode: w.exitCode()}
	lost := "; a fresh worker was started and the session's state (variables, imports) is lost"
	w.mu.Lock()
	perr := w.protoErr
	w.mu.Unlock()
	switch {
	case w.sessionClosed.Load() && !overdue:
		res.Status, res.FinishReason = runner.StatusCancelled, "cancelled"
		res.Error = "execution cancelled: its session was closed, which stops the session's worker and discards its state"
	case reason == reasonTimeout && overdue:
		res.Status, res.FinishReason = runner.StatusTimeout, "timeout"
		res.Error = fmt.Sprintf("execution timed out after %s and did not stop within %s of the interrupt, so the worker was killed%s", rr.timeout, rr.grace, lost)
	case reason == reasonCancel && overdue:
		res.Status, res.FinishReason = runner.StatusCancelled, "cancelled"
		res.Error = fmt.Sprintf("execution cancelled; it did not stop within %s of the interrupt, so the worker was killed%s", rr.grace, lost)
	case w.sb.cg.oomKilled():
		res.Status, res.FinishReason = runner.StatusLimitExceeded, "memory_limit"
		res.Error = fmt.Sprintf("memory limit of %s exceeded: the kernel killed the worker%s", formatBytes(w.sb.limits.MemoryBytes), lost)
	case perr != nil:
		res.Status, res.FinishReason = runner.StatusError, "protocol_error"
		res.Error = fmt.Sprintf("the code wrote into the worker's protocol pipe (%v), so the worker was killed%s", perr, lost)
	default:
		res.Status, res.FinishReason = runner.StatusError, "worker_exit"
		res.Error = fmt.Sprintf("the Python worker %s%s", w.exitDescription(), lost)
	}
	return res
}

// outputCap forwards the code's stdout and stderr up to max_output_bytes together, then a
// marker for each stream it cuts, then nothing of that stream. Each stream is guaranteed
// the first streamReserve bytes of the budget, whatever the other wrote: a program that
// floods stdout still gets what it writes to stderr (a warning, a child process's
// traceback) through, and one that floods stderr still gets its answer out.
type outputCap struct {
	max       uint64
	n         [2]uint64 // bytes forwarded: stdout, stderr
	cut       [2]bool   // the stream was cut: its marker is written, the rest dropped
	truncated bool
	emit      func(runner.Event) error
}

// streamReserveMax bounds what outputCap reserves for each stream: a quarter of the
// budget, at most this.
const streamReserveMax = 64 << 10

// streamReserve is the part of a budget of max bytes each stream is guaranteed.
func streamReserve(max uint64) uint64 { return min(max/4, streamReserveMax) }

// truncationMarker is written once in a stream where it is cut.
const truncationMarker = "\n[%s truncated: max_output_bytes of %d bytes reached; the rest of %s was dropped]\n"

func (o *outputCap) add(s runner.Stream, data []byte) error {
	i, name := 0, "stdout"
	if s == runner.Stderr {
		i, name = 1, "stderr"
	}
	if o.cut[i] {
		return nil
	}
	// What the other stream wrote, or its reserve if it wrote less, is not this one's.
	other := max(o.n[1-i], streamReserve(o.max))
	var rem uint64
	if lim := o.max - min(other, o.max); lim > o.n[i] {
		rem = lim - o.n[i]
	}
	if uint64(len(data)) > rem {
		data = data[:rem]
		o.cut[i], o.truncated = true, true
	}
	o.n[i] += uint64(len(data))
	if len(data) > 0 {
		if err := o.emit(runner.Event{Output: &runner.Output{Stream: s, Data: data}}); err != nil {
			return err
		}
	}
	if o.cut[i] {
		return o.emit(runner.Event{Output: &runner.Output{Stream: s, Data: fmt.Appendf(nil, truncationMarker, name, o.max, name)}})
	}
	return nil
}

// errorCutMarker replaces the middle of an error text longer than max_output_bytes.
const errorCutMarker = "\n[error truncated: max_output_bytes of %d bytes reached; %d bytes cut here]\n"

// capError cuts an error text to max bytes (and the marker), keeping its start and its
// end: a traceback's end names the exception, its start where it was raised from. It
// reports whether it cut.
func capError(s string, max uint64) (string, bool) {
	if uint64(len(s)) <= max {
		return s, false
	}
	head, tail := s[:max/2], s[uint64(len(s))-(max-max/2):]
	// Cut on character boundaries: drop a partial character at either end of the cut.
	for len(head) > 0 && !utf8.RuneStart(s[len(head)]) {
		head = head[:len(head)-1]
	}
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	return head + fmt.Sprintf(errorCutMarker, max, len(s)-len(head)-len(tail)) + tail, true
}

// Notes written to an execution's stderr about the session's filesystem.
const (
	diskRepairNote = "[limit: the session's work dir: %s]\n"
	diskBrokenNote = "\n[limit: the session's work dir filesystem failed during this execution (was the host's disk full?) and is read-only: writes fail with EROFS and files written lately may be lost; the worker is restarted and the filesystem checked and repaired before the next execution, and the session's state (variables, imports) is lost]\n"
)

// sysfsExt4 holds the ext4 filesystems' counters, by device.
var sysfsExt4 = "/sys/fs/ext4"

// diskErrorCount reads the error count of the ext4 filesystem on dev (loop7): the
// errors it recorded, a write refused by an aborted journal among them.
func diskErrorCount(dev string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(sysfsExt4, dev, "errors_count"))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// diskBroken reports whether the session's filesystem recorded an error since the
// worker mounted it.
func (w *worker) diskBroken() bool {
	if w.diskDev == "" {
		return false
	}
	n, ok := diskErrorCount(w.diskDev)
	return ok && n > w.diskErrs
}

// takeDiskNote returns, once, the note on what e2fsck repaired before the worker mounted
// the session's image.
func (w *worker) takeDiskNote() string {
	if p := w.diskNote.Swap(nil); p != nil {
		return *p
	}
	return ""
}

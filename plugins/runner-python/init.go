package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// initArg is the argument with which the plugin binary re-executes itself as the sandbox's
// first process ("init"), inside the namespaces the plugin created for it.
const initArg = "__limit_runner_python_init__"

// The init's file descriptors, set up by the plugin (ExtraFiles).
const (
	initFdCmd    = 3 // plugin → init: the config frame; EOF when the plugin is gone
	initFdStatus = 4 // init → plugin: setup report, worker exit, fatal errors
	initFdOut    = 5 // the worker's stdout (write end)
	initFdErr    = 6 // the worker's stderr (write end)
	initFdCtlIn  = 7 // plugin → worker frames (read end)
	initFdCtlOut = 8 // worker → plugin frames (write end)
)

// initConfig is what the plugin tells init to set up.
type initConfig struct {
	// Interpreter and Args start the worker; Env is its whole environment.
	Interpreter string   `json:"interpreter"`
	Args        []string `json:"args"`
	Env         []string `json:"env"`
	// WorkDir is the worker's working directory.
	WorkDir string `json:"work_dir"`
	// UID and GID the worker runs as; -1 keeps init's.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Mount is set when init runs in a new mount namespace: it makes mounts private and
	// mounts /proc (with PID) and hides Cover.
	Mount bool `json:"mount"`
	PID   bool `json:"pid"`
	UTS   bool `json:"uts"`
	// Net is set in a new network namespace: init brings the loopback interface up.
	Net bool `json:"net"`
	// Cover, if set, is the highest ancestor of WorkDir the worker's uid cannot search:
	// init mounts an empty read-only tmpfs over it with just the path to WorkDir, where
	// WorkDir itself is mounted, so the worker reaches its directory and nothing else
	// that was below Cover.
	Cover string `json:"cover,omitempty"`
	// Hide lists directories hidden like the host's /tmp and /run (with Mount): the
	// plugin's socket directory, where limitd (its data_dir/run) keeps the sockets of its
	// plugins, this one's included.
	Hide []string `json:"hide,omitempty"`
	// ShmSize, if set, is the size of a private tmpfs mounted on /dev/shm.
	ShmSize uint64 `json:"shm_size,omitempty"`
	// Landlock paths: read-only directories, read-write directories and files.
	Landlock  bool     `json:"landlock"`
	ReadOnly  []string `json:"read_only"`
	ReadWrite []string `json:"read_write"`
	RWFiles   []string `json:"rw_files"`
	Seccomp   bool     `json:"seccomp"`
	// Rlimits are set on init before it starts the worker, which inherits them.
	Rlimits []rlimitSpec `json:"rlimits"`
	// Disk, if set, is the session's disk image, mounted on WorkDir (needs Mount).
	Disk *diskConfig `json:"disk,omitempty"`
	// Cgroups maps a cgroup v1 controller to the session's directory in it: init moves
	// the thread that starts the worker there, so the worker starts inside them.
	Cgroups map[string]string `json:"cgroups,omitempty"`
}

// rlimitSpec is one resource limit, soft and hard alike.
type rlimitSpec struct {
	Name     string `json:"name"`
	Resource int    `json:"resource"`
	Value    uint64 `json:"value"`
}

// initSetup is init's setup report.
type initSetup struct {
	Features []runner.IsolationFeature `json:"features"`
	// WorkerPID is the worker's pid as init sees it.
	WorkerPID int `json:"worker_pid"`
	// DiskDevice is the loop device the session's image is mounted from ("loop7"), whose
	// ext4 error count (/sys/fs/ext4/<device>/errors_count) tells that the filesystem
	// broke; "" without the image.
	DiskDevice string `json:"disk_device,omitempty"`
	// DiskRepair says what e2fsck did to the image before it was mounted, "" when it had
	// no errors.
	DiskRepair string `json:"disk_repair,omitempty"`
}

// The thread that joins the session's cgroups must be the one that forks the worker (a
// child starts in its parent thread's cgroups), and init's main thread, so cgroup.procs
// lists init: locked in an init function, main runs on the main thread.
func init() {
	if len(os.Args) > 1 && os.Args[1] == initArg {
		runtime.LockOSThread()
	}
}

// sandboxInit is the main function of init. It never returns.
func sandboxInit() {
	runtime.LockOSThread()
	// Caught, not ignored: an ignored signal would stay ignored in the worker and its
	// children (multiprocessing stops its workers with SIGTERM).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for range sigs {
		}
	}()
	for fd := initFdCmd; fd <= initFdCtlOut; fd++ {
		unix.CloseOnExec(fd)
	}
	// Whatever else init inherited (descriptors the host or its parent left open, which
	// the plugin passed on unknowingly) must not reach the code: the worker gets 0-4.
	if err := base.CloseOnExecFrom(initFdCtlOut + 1); err != nil {
		_, _ = os.NewFile(initFdStatus, "status").Write(encodeFrame(frameFatal, field{keyError, []byte("close inherited descriptors: " + err.Error())}))
		os.Exit(2)
	}
	status := os.NewFile(initFdStatus, "status")
	code, err := runInit(os.NewFile(initFdCmd, "cmd"), status)
	if err != nil {
		_, _ = status.Write(encodeFrame(frameFatal, field{keyError, []byte(err.Error())}))
	}
	os.Exit(code)
}

// runInit sets the sandbox up, starts the worker, serves commands and reaps processes
// until the worker exits; it returns init's exit code.
func runInit(cmd, status *os.File) (int, error) {
	f, err := readFrame(cmd)
	if err != nil {
		return 2, fmt.Errorf("read sandbox config: %w", err)
	}
	var cfg initConfig
	if f.typ != frameConfig {
		return 2, fmt.Errorf("expected a config frame, got %q", f.typ)
	}
	if err := json.Unmarshal(f.fields[keyJSON], &cfg); err != nil {
		return 2, fmt.Errorf("decode sandbox config: %w", err)
	}
	// Orphans of the worker's processes become init's children, so init can reap them and,
	// without a pid namespace, kill them when the worker ends.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	rep := newReport()
	// The cgroups' files are opened now, while init may still reach them, and joined
	// just before the worker is started: a thread in the session's cpu cgroup runs the
	// rest of the setup (Landlock on every thread, above all) several times slower.
	tasks := openCgroupTasks(cfg.Cgroups, rep)
	devnull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		return 2, fmt.Errorf("open /dev/null: %w", err)
	}
	var setup initSetup
	if cfg.Mount {
		if err := setupMounts(&cfg, rep, &setup); err != nil {
			return 2, err
		}
	}
	if cfg.Disk != nil && rep.get(featDisk) == nil {
		// setupMounts did not get to it: there is no private mount namespace to mount in.
		if cfg.Disk.Required {
			return 2, errors.New("the session's files are in its disk image, which needs the sandbox's own mount namespace")
		}
		rep.fail(featDisk, "needs mount_ns: the session's filesystem is mounted in the sandbox's own mount namespace")
	}
	if cfg.UTS {
		if err := unix.Sethostname([]byte("limit-python")); err != nil {
			rep.fail(featUTSNS, "set the sandbox's hostname: "+err.Error())
		} else {
			rep.set(featUTSNS, true, "own UTS namespace, hostname limit-python")
		}
	}
	if cfg.Net {
		if err := loopbackUp(); err != nil {
			rep.fail(featNetNS, "bring up loopback in the sandbox's network namespace: "+err.Error())
		} else {
			rep.set(featNetNS, true, "own network namespace with only loopback: no route to the host or beyond")
		}
	}
	if cfg.Landlock {
		applyLandlock(&cfg, rep)
	}
	if cfg.Seccomp {
		applySeccomp(rep)
	}
	// Limits set on init are inherited by the worker. init itself is root, which
	// RLIMIT_NPROC exempts, and writes only to pipes, which RLIMIT_FSIZE does not cover.
	// (prlimit on the worker instead would need CAP_SYS_RESOURCE, which root may lack.)
	applyRlimits(cfg.Rlimits, rep)

	joinCgroups(tasks, rep)
	argv := append([]string{cfg.Interpreter}, cfg.Args...)
	// The worker dies with init (the kernel's parent-death signal, set after the uid
	// switch so it holds): without a PID namespace, nothing else would end a worker busy
	// running code when init is killed because the plugin died with the host. init's
	// main thread, the one that forks here, lives as long as init.
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cfg.UID >= 0 {
		sys.Credential = &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID), Groups: []uint32{}}
	}
	pid, err := syscall.ForkExec(cfg.Interpreter, argv, &syscall.ProcAttr{
		Dir:   cfg.WorkDir,
		Env:   cfg.Env,
		Files: []uintptr{devnull.Fd(), initFdOut, initFdErr, initFdCtlIn, initFdCtlOut},
		Sys:   sys,
	})
	if err != nil {
		return 2, fmt.Errorf("start %s in the sandbox: %w", cfg.Interpreter, err)
	}
	for fd := initFdOut; fd <= initFdCtlOut; fd++ {
		_ = unix.Close(fd)
	}
	devnull.Close()

	setup.Features, setup.WorkerPID = rep.entries(), pid
	b, _ := json.Marshal(setup)
	if _, err := status.Write(encodeFrame(frameSetup, field{keyJSON, b})); err != nil {
		killTree(pid)
		return 2, nil
	}

	go serveCommands(cmd, pid)

	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			// No child left: the worker is gone without us seeing it (cannot happen).
			return 0, nil
		}
		if wpid != pid || ws.Stopped() || ws.Continued() {
			continue
		}
		fields := []field{}
		switch {
		case ws.Exited():
			fields = append(fields, field{keyExit, []byte(strconv.Itoa(ws.ExitStatus()))})
		case ws.Signaled():
			fields = append(fields, field{keySignal, []byte(strconv.Itoa(int(ws.Signal())))})
		}
		_, _ = status.Write(encodeFrame(frameExit, fields...))
		killTree(pid)
		return 0, nil
	}
}

// serveCommands waits on the command pipe: when the plugin goes away (EOF), the sandbox
// ends with it. (The plugin signals the worker itself: with Landlock applied thread by
// thread below ABI 8, init's threads are in sibling domains and signal scoping would stop
// any but the forking thread.)
func serveCommands(cmd *os.File, worker int) {
	buf := make([]byte, 64)
	for {
		if _, err := cmd.Read(buf); err != nil {
			killTree(worker)
			os.Exit(0)
		}
	}
}

// killTree kills the worker's process group and every other descendant of init. As the
// first process of a pid namespace init's own exit kills them all anyway; without one, the
// child subreaper setting makes orphans init's children, so none escapes.
func killTree(worker int) {
	_ = syscall.Kill(-worker, syscall.SIGKILL)
	if os.Getpid() == 1 {
		return
	}
	for round := 0; round < 100; round++ {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if wpid <= 0 || err != nil {
				break
			}
		}
	}
}

// children lists the children of every thread of process pid.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// openCgroupTasks opens the tasks file of each of the session's cgroups, to join them
// later, when Landlock no longer lets init open them. A controller whose file cannot be
// opened is recorded in rep.
func openCgroupTasks(dirs map[string]string, rep *report) map[string]*os.File {
	out := make(map[string]*os.File, len(dirs))
	for ctrl, dir := range dirs {
		f, err := os.OpenFile(filepath.Join(dir, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			rep.fail(controllerFeatures[ctrl], fmt.Sprintf("move the sandbox into %s: %v", dir, err))
			continue
		}
		out[ctrl] = f
	}
	return out
}

// joinCgroups moves the calling thread (init's main thread, which forks the worker) into
// the session's cgroups through their tasks files, and closes them. A thread moving
// itself is cheap: moving another process (the plugin writing init's pid to cgroup.procs)
// waits for an RCU grace period, ~10 ms of every worker start. The plugin checks from
// outside that the worker is in them.
func joinCgroups(tasks map[string]*os.File, rep *report) {
	for ctrl, f := range tasks {
		if _, err := f.Write([]byte("0")); err != nil {
			rep.fail(controllerFeatures[ctrl], fmt.Sprintf("move the sandbox into the %s cgroup: %v", ctrl, err))
		}
		f.Close()
	}
}

// setupMounts makes the new mount namespace private, mounts the pid namespace's /proc and
// hides what lies above the work dir.
func setupMounts(cfg *initConfig, rep *report, setup *initSetup) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		rep.fail(featMountNS, "make the sandbox's mounts private: "+err.Error())
		return nil
	}
	details := []string{"own mount namespace"}
	// Before anything is mounted or covered: the host's disks the code has no use for are
	// not held by the sandbox (an operator can unmount them while sessions run).
	keep := append(append(append([]string{cfg.WorkDir, cfg.Interpreter}, cfg.ReadOnly...), cfg.ReadWrite...), cfg.RWFiles...)
	if cfg.Disk != nil {
		keep = append(keep, cfg.Disk.Image)
	}
	if n, err := detachUnneeded(keep); err == nil && n > 0 {
		details = append(details, fmt.Sprintf("%d host disk mount(s) it has no use for detached", n))
	}
	// First, so that what is mounted over the directories above the work dir carries it.
	if cfg.Disk != nil {
		if err := mountDisk(cfg, rep, setup); err != nil {
			return err
		}
	}
	if cfg.PID {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			rep.fail(featPIDNS, "mount /proc of the sandbox's pid namespace (the host's processes would be visible): "+err.Error())
		} else {
			details = append(details, "/proc shows only the sandbox's processes")
		}
	}
	if cfg.ShmSize > 0 {
		// POSIX shared memory and semaphores (multiprocessing needs them) get a /dev/shm
		// of the sandbox's own, instead of the host's shared one.
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			opts := fmt.Sprintf("mode=1777,size=%d", cfg.ShmSize)
			if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
				rep.fail(featMountNS, "mount the sandbox's /dev/shm: "+err.Error())
				return nil
			}
			cfg.ReadWrite = append(cfg.ReadWrite, "/dev/shm")
			details = append(details, "a private /dev/shm")
		}
	}
	// The host's /tmp, /var/tmp and /run, where services keep their Unix sockets (which
	// Landlock does not stop a connect to), and the plugins' socket directory are replaced
	// by empty read-only tmpfs: of them the code sees only what it may use (its work dir,
	// an interpreter or venv kept there).
	allowed := append(append(append([]string{cfg.WorkDir}, cfg.ReadOnly...), cfg.ReadWrite...), cfg.RWFiles...)
	// Resolved before any is covered: one under another (a socket dir in /tmp) is no
	// longer there to resolve once that one is, and is hidden with it.
	var dirs []string
	for _, d := range append(slices.Clone(hiddenDirs), cfg.Hide...) {
		real, err := filepath.EvalSymlinks(d)
		if err != nil || slices.Contains(dirs, real) {
			continue
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			continue
		}
		dirs = append(dirs, real)
	}
	var hidden []string
	for _, real := range dirs {
		if !underAny(real, hidden) {
			if err := coverAbove(real, keptUnder(real, allowed)); err != nil {
				return fmt.Errorf("hide the host's %s in the sandbox: %w", real, err)
			}
		}
		hidden = append(hidden, real)
	}
	if len(hidden) > 0 {
		details = append(details, "the host's "+strings.Join(hidden, ", ")+" hidden (their sockets unreachable) but for the paths the code may use")
	}
	if cfg.Cover != "" && !underAny(cfg.Cover, hidden) {
		if err := coverAbove(cfg.Cover, []string{cfg.WorkDir}); err != nil {
			// Without the cover the worker's uid cannot reach its work dir by its path.
			return fmt.Errorf("make the work dir reachable in the sandbox: %w", err)
		}
		details = append(details, "the host's "+cfg.Cover+" is hidden but for the work dir")
	}
	rep.set(featMountNS, true, strings.Join(details, "; "))
	return nil
}

// hiddenDirs are replaced in the sandbox by empty tmpfs holding only the allowed paths.
var hiddenDirs = []string{"/tmp", "/var/tmp", "/run"}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

// keptUnder returns the existing paths of allowed strictly below dir (resolved), without
// those inside another of them (they come with it).
func keptUnder(dir string, allowed []string) []string {
	var ps []string
	for _, a := range allowed {
		real, err := filepath.EvalSymlinks(a)
		if err != nil || real == dir || !under(real, dir) {
			continue
		}
		ps = append(ps, real)
	}
	slices.Sort(ps)
	var out []string
	for _, p := range slices.Compact(ps) {
		if !underAny(p, out) {
			out = append(out, p)
		}
	}
	return out
}

// coverAbove mounts an empty tmpfs over top, recreates in it the path of each of keep
// (below top), mounts each there and makes the tmpfs read-only: of top, only keep is left.
func coverAbove(top string, keep []string) error {
	trees := make([]int, 0, len(keep))
	defer func() {
		for _, t := range trees {
			unix.Close(t)
		}
	}()
	for _, k := range keep {
		if k == top || !under(k, top) {
			return fmt.Errorf("%s is not above %s", top, k)
		}
		t, err := unix.OpenTree(unix.AT_FDCWD, k, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("open_tree %s: %w", k, err)
		}
		trees = append(trees, t)
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", top, "tmpfs", flags, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mount tmpfs over %s: %w", top, err)
	}
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	for i, k := range keep {
		var st unix.Stat_t
		if err := unix.Fstat(trees[i], &st); err != nil {
			return fmt.Errorf("stat %s: %w", k, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.MkdirAll(k, 0o755); err != nil {
				return err
			}
		} else { // a file: mounted over an empty one
			if err := os.MkdirAll(filepath.Dir(k), 0o755); err != nil {
				return err
			}
			if f, err := os.OpenFile(k, os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
				return err
			} else {
				f.Close()
			}
		}
		if err := unix.MoveMount(trees[i], "", unix.AT_FDCWD, k, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("move_mount %s: %w", k, err)
		}
	}
	if err := unix.Mount("", top, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", top, err)
	}
	return nil
}

// loopbackUp brings the loopback interface of the current network namespace up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// landlockABI returns the kernel's Landlock ABI version, 0 when there is none.
func landlockABI() int {
	const createRulesetVersion = 1
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, createRulesetVersion)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// applyLandlock restricts init, and so the worker it starts, to the configured paths, and
// checks that the restriction holds by opening "/", which no rule allows.
func applyLandlock(cfg *initConfig, rep *report) {
	abi := landlockABI()
	if abi < 1 {
		rep.fail(featLandlock, "the kernel has no Landlock (not built in or not enabled at boot)")
		return
	}
	ll := landlock.MustConfig(landlock.V7.HandledAccessFS, landlock.V7.Scoped).BestEffort()
	rules := []landlock.Rule{
		landlock.RODirs(cfg.ReadOnly...).IgnoreIfMissing(),
		landlock.RWDirs(cfg.ReadWrite...),
		landlock.RWFiles(cfg.RWFiles...).IgnoreIfMissing(),
	}
	if err := ll.Restrict(rules...); err != nil {
		rep.fail(featLandlock, "apply the Landlock ruleset: "+err.Error())
		return
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		rep.fail(featLandlock, fmt.Sprintf("Landlock ABI v%d accepted the ruleset but reading / is still allowed", abi))
		return
	}
	if !errors.Is(err, unix.EACCES) {
		rep.fail(featLandlock, "checking the ruleset: opening / failed with "+err.Error()+" instead of permission denied")
		return
	}
	scoped := ""
	if abi >= 6 {
		scoped = "; signals and abstract unix sockets scoped to the sandbox"
	}
	rep.set(featLandlock, true, fmt.Sprintf("Landlock ABI v%d: system paths read-only, the work dir read-write, nothing else%s", abi, scoped))
}

// applySeccomp loads the filter on every thread of init (and so of the worker) and checks
// the kernel reports it.
func applySeccomp(rep *report) {
	if err := seccomp.LoadFilter(seccompFilter()); err != nil {
		rep.fail(featSeccomp, "load the seccomp filter: "+err.Error())
		return
	}
	mode, err := procStatusField("/proc/self/status", "Seccomp")
	if err != nil || mode != "2" {
		rep.fail(featSeccomp, fmt.Sprintf("the filter loaded but /proc/self/status says Seccomp %q (%v)", mode, err))
		return
	}
	rep.set(featSeccomp, true, fmt.Sprintf("filter mode: %d system calls denied (ptrace, mount, kexec, bpf, module loading, namespaces, keyrings, io_uring, ...)", len(deniedSyscalls)+2))
}

// applyRlimits lowers init's resource limits, which the worker inherits. A limit above the
// current hard limit cannot be raised without CAP_SYS_RESOURCE: the hard limit stays.
func applyRlimits(limits []rlimitSpec, rep *report) {
	if len(limits) == 0 {
		return
	}
	var set, failed []string
	for _, l := range limits {
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(l.Resource, &cur); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", l.Name, err))
			continue
		}
		v := min(l.Value, cur.Max)
		// syscall.Setrlimit, not unix's: it keeps the Go runtime from restoring its saved
		// RLIMIT_NOFILE in the child.
		if err := syscall.Setrlimit(l.Resource, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", l.Name, err))
			continue
		}
		set = append(set, fmt.Sprintf("%s=%d", l.Name, v))
	}
	if len(failed) > 0 {
		rep.fail(featRlimits, "setrlimit failed for "+strings.Join(failed, ", "))
		return
	}
	rep.set(featRlimits, true, strings.Join(set, " "))
}

// procStatusField returns a field of a /proc/<pid>/status file.
func procStatusField(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == name {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no field %s", path, name)
}

package main

import (
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/limitgraph/limit/sdk/runner"
)

// workerScript is the Python program the worker runs (passed with -c, so the sandbox
// needs no access to the plugin's files).
//
//go:embed worker.py
var workerScript string

// workerLoader runs the worker's source (sys.argv[1]) under its own file name, so its
// frames can be told from the code's (which may exec strings of its own).
const workerLoader = "import sys; exec(compile(sys.argv[1], '<limit-worker>', 'exec'))"

// compiledLoader runs the worker's code compiled ahead (see precompileWorker), saving the
// compilation at every start: sys.argv[1] is the marshalled code object in base64.
const compiledLoader = "import sys, marshal, binascii; exec(marshal.loads(binascii.a2b_base64(sys.argv[1])))"

// systemReadOnly are the directories the sandboxed code may read (and execute from);
// missing ones are skipped. /proc is the sandbox's own when it has a pid namespace.
var systemReadOnly = []string{
	"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc", "/opt",
	"/dev", "/proc", "/sys/devices/system/cpu", "/run/systemd/resolve",
}

// systemReadWriteFiles are files the code may write besides its work dir.
var systemReadWriteFiles = []string{"/dev/null"}

// sandbox is what the plugin sets up for a session's workers: limits, cgroups, a uid and
// the configuration of every worker's init. Workers come and go (a timeout may kill one);
// the sandbox lasts as long as the session.
type sandbox struct {
	set     settings
	sess    runner.Session
	limits  runner.Limits
	workDir string
	// uid and gid of the code; -1 when the plugin does not run as root.
	uid, gid int
	lease    *uidLease
	cg       *cgroups
	// cover is the highest ancestor of the work dir the uid cannot search, or "".
	cover string
	// flags are the namespaces each worker's init is started in.
	flags uintptr
	// static holds what the plugin itself set up or decided (cgroups, uid, disabled
	// features); each worker's report starts from it.
	static *report
	// disk is the session's disk image, nil when the disk limit is not enforced.
	disk *diskImage
	// self is the plugin's executable, re-run as init.
	self string
	// compiled is the worker's code compiled by the interpreter ahead, or "" to pass it as
	// source.
	compiled string
	// baseline are the features that keep the session's code from the host and the API
	// (baselineFeatures); with enforceBaseline a worker without any of them is not started.
	baseline        []string
	enforceBaseline bool
}

// effectiveLimits applies the session's non-zero limits over the configured ones.
func effectiveLimits(def, s runner.Limits) runner.Limits {
	l := def
	if s.Timeout > 0 {
		l.Timeout = s.Timeout
	}
	if s.MemoryBytes > 0 {
		l.MemoryBytes = s.MemoryBytes
	}
	if s.CPUMillis > 0 {
		l.CPUMillis = s.CPUMillis
	}
	if s.MaxProcesses > 0 {
		l.MaxProcesses = s.MaxProcesses
	}
	if s.MaxOutputBytes > 0 {
		l.MaxOutputBytes = s.MaxOutputBytes
	}
	if s.MaxFileBytes > 0 {
		l.MaxFileBytes = s.MaxFileBytes
	}
	if s.MaxDiskBytes > 0 {
		l.MaxDiskBytes = s.MaxDiskBytes
	}
	return l
}

// newSandbox prepares a session's sandbox: it checks the work dir, reserves a uid and
// gives it the work dir (when running as root), and creates the cgroups.
func newSandbox(set settings, sess runner.Session, spare *spareImage) (*sandbox, error) {
	if sess.WorkDir == "" {
		return nil, errors.New("the session has no work dir: the host must create one and pass it")
	}
	wd, err := filepath.Abs(sess.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("work dir %q: %w", sess.WorkDir, err)
	}
	if wd, err = filepath.EvalSymlinks(wd); err != nil {
		return nil, fmt.Errorf("work dir %q: %w", sess.WorkDir, err)
	}
	if fi, err := os.Stat(wd); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("work dir %s is not a directory", wd)
	}
	if d := sess.Limits.MaxDiskBytes; d != 0 && d < minDiskBytes {
		return nil, fmt.Errorf("the session's limits.max_disk_bytes is %d: it must be at least %d (8 MiB), or 0 for the runner's max_disk_bytes", d, minDiskBytes)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the plugin's executable: %w", err)
	}
	sb := &sandbox{
		set: set, sess: sess, limits: effectiveLimits(set.limits, sess.Limits), workDir: wd,
		uid: -1, gid: -1, static: newReport(), self: self,
		baseline: baselineFeatures(sess.AllowNetwork), enforceBaseline: !set.allowWeak,
	}
	ok := false
	defer func() {
		if !ok {
			sb.close(false)
		}
	}()
	for _, f := range featureNames {
		if set.disable[f] {
			sb.static.fail(f, "disabled by disable_isolation")
		}
	}

	// Namespaces: init is started in them; what init reports decides the rest.
	if sess.AllowNetwork && !set.disable[featNetNS] {
		sb.static.set(featNetNS, false, "the session allows network access: it shares the host's network namespace")
	}
	sb.flags = sessionNamespaces(set, sess.AllowNetwork)
	if sb.flags&unix.CLONE_NEWPID != 0 && sb.flags&unix.CLONE_NEWNS == 0 {
		sb.static.fail(featPIDNS, "without mount_ns /proc cannot be remounted, so the host's processes stay visible")
	}

	if os.Geteuid() == 0 && !set.disable[featUID] {
		if sb.lease, err = leaseUID(sess.ID); err != nil {
			return nil, err
		}
		sb.uid, sb.gid = sb.lease.uid, sb.lease.uid
		if err := chownTree(wd, sb.uid, sb.gid); err != nil {
			return nil, fmt.Errorf("give the work dir to the sandbox uid %d: %w", sb.uid, err)
		}
		if err := os.Chmod(wd, 0o700); err != nil {
			return nil, fmt.Errorf("work dir %s: %w", wd, err)
		}
		sb.cover = unsearchableAncestor(wd)
		if sb.cover != "" && sb.flags&unix.CLONE_NEWNS == 0 {
			return nil, fmt.Errorf("the sandbox uid cannot reach the work dir %s (%s is not searchable by other users) and mount_ns is disabled: enable mount_ns or disable uid", wd, sb.cover)
		}
		sb.static.set(featUID, true, fmt.Sprintf("the code runs as uid %d and gid %d of its own, owner of the work dir only", sb.uid, sb.gid))
	} else if !set.disable[featUID] {
		sb.static.fail(featUID, fmt.Sprintf("the plugin does not run as root, so the code runs as the plugin's own uid %d and max_processes cannot be enforced per uid", os.Geteuid()))
	}

	// After the uid: the image's root is the uid's.
	setupDisk(sb, spare)

	name := fmt.Sprintf("%s%d-%s", cgroupPrefix, os.Getpid(), shortHash(sess.ID))
	sb.cg = newCgroups(name, sb.limits, set.disable, sb.static)
	ok = true
	return sb, nil
}

// sessionNamespaces are the namespaces a session's init is started in: pid, mount, IPC and
// UTS, and network unless the session allows the network, but for those disabled.
func sessionNamespaces(set settings, allowNetwork bool) uintptr {
	var flags uintptr
	for _, n := range []struct {
		feat string
		flag uintptr
	}{
		{featPIDNS, unix.CLONE_NEWPID}, {featMountNS, unix.CLONE_NEWNS},
		{featIPCNS, unix.CLONE_NEWIPC}, {featUTSNS, unix.CLONE_NEWUTS}, {featNetNS, unix.CLONE_NEWNET},
	} {
		if !set.disable[n.feat] && (n.flag != unix.CLONE_NEWNET || !allowNetwork) {
			flags |= n.flag
		}
	}
	return flags
}

// shortHash is a short stable hash of s for names.
func shortHash(s string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// unsearchableAncestor returns the highest ancestor of dir that other users cannot
// search (no o+x), or "" when the whole path is searchable.
func unsearchableAncestor(dir string) string {
	var parts []string
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		parts = append(parts, d)
		if d == "/" || d == "." {
			break
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		fi, err := os.Stat(parts[i])
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return parts[i]
		}
	}
	return ""
}

// initConfig is the configuration of a worker's init.
func (sb *sandbox) initConfig(flags uintptr) initConfig {
	env := map[string]string{}
	for k, v := range sb.set.env {
		env[k] = v
	}
	for k, v := range sb.sess.Env {
		env[k] = v
	}
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	sort.Strings(envList)
	args := []string{"-s", "-c", workerLoader, workerScript}
	if sb.compiled != "" {
		args = []string{"-s", "-c", compiledLoader, sb.compiled}
	}
	if _, ok := env["LC_CTYPE"]; ok {
		args = append(args, "keep-lc-ctype")
	}
	cfg := initConfig{
		Interpreter: sb.set.interpreter,
		Args:        args,
		Env:         envList,
		WorkDir:     sb.workDir,
		UID:         sb.uid,
		GID:         sb.gid,
		Mount:       flags&unix.CLONE_NEWNS != 0,
		PID:         flags&unix.CLONE_NEWPID != 0,
		UTS:         flags&unix.CLONE_NEWUTS != 0,
		Net:         flags&unix.CLONE_NEWNET != 0,
		Landlock:    !sb.set.disable[featLandlock],
		ReadOnly:    append(append([]string{}, systemReadOnly...), sb.set.roots...),
		ReadWrite:   []string{sb.workDir},
		RWFiles:     systemReadWriteFiles,
		Seccomp:     !sb.set.disable[featSeccomp],
		Cgroups:     maps.Clone(sb.cg.dirs),
		Disk:        sb.disk.config(),
	}
	if cfg.Mount {
		cfg.Cover = sb.cover
		if d := os.Getenv(plugin.EnvUnixSocketDir); d != "" {
			cfg.Hide = []string{d}
		}
		// tmpfs pages count against the memory cgroup, so the limit bounds it as well.
		cfg.ShmSize = sb.limits.MemoryBytes
	}
	if !sb.set.disable[featRlimits] {
		if sb.uid >= 0 {
			cfg.Rlimits = append(cfg.Rlimits, rlimitSpec{"RLIMIT_NPROC", unix.RLIMIT_NPROC, uint64(sb.limits.MaxProcesses)})
		}
		cfg.Rlimits = append(cfg.Rlimits,
			rlimitSpec{"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, sb.limits.MaxFileBytes},
			rlimitSpec{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 4096},
			rlimitSpec{"RLIMIT_CORE", unix.RLIMIT_CORE, 0},
		)
		if _, ok := sb.cg.dirs["memory"]; !ok {
			// Set by the worker on itself: on init (a Go program) it would limit init too.
			cfg.Args = append(cfg.Args, fmt.Sprintf("rlimit-as=%d", sb.limits.MemoryBytes))
		}
	}
	return cfg
}

// close removes what the sandbox created: the cgroups and the uid lease. With removeWorkDir
// the session is over and its work dir goes too; otherwise (the plugin stops while the
// session goes on) the work dir is handed back to the plugin's own uid, so no file stays
// owned by the session's uid.
func (sb *sandbox) close(removeWorkDir bool) error {
	var errs []error
	if sb.cg != nil {
		if err := sb.cg.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if sb.uid >= 0 || removeWorkDir {
		switch {
		case removeWorkDir:
			if err := os.RemoveAll(sb.workDir); err != nil {
				errs = append(errs, fmt.Errorf("remove the work dir: %w", err))
			}
			// The session's disk image goes with it, whether or not this process used it.
			if err := os.Remove(diskImagePath(sb.workDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove the session's disk image: %w", err))
			}
		default:
			if err := chownTree(sb.workDir, os.Geteuid(), os.Getegid()); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("hand the work dir back to uid %d: %w", os.Geteuid(), err))
			}
		}
	}
	sb.lease.release()
	sb.lease = nil
	return errors.Join(errs...)
}

// unknownFeatures names the required features that rep does not report as enforced.
func unknownFeatures(rep *report, required []string) string {
	var out []string
	for _, name := range required {
		if !rep.enforced(name) {
			detail := "not checked"
			if f := rep.get(name); f != nil {
				detail = f.Detail
			}
			out = append(out, name+" ("+detail+")")
		}
	}
	return strings.Join(out, "; ")
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// These tests attack the sandbox from inside, through the real plugin binary. Each attack
// must be contained and reported, and the session must work afterwards.

func TestMemoryHog(t *testing.T) {
	t.Parallel()
	hog := "x = []\nwhile True:\n    x.append(' ' * 10**6)"
	t.Run("cgroup", func(t *testing.T) {
		t.Parallel()
		s := open(t, map[string]any{"memory_limit": "256MiB"}, nil)
		if _, m := s.health(); !m[featCgMemory].Enforced {
			t.Skipf("no memory cgroup here: %s (the rlimit case covers this machine)", m[featCgMemory].Detail)
		}
		e := s.run(hog, 0)
		if e.res.Status != runner.StatusLimitExceeded || e.res.FinishReason != "memory_limit" || !e.res.StateReset ||
			!strings.Contains(e.res.Error, "memory limit of 256 MiB exceeded") {
			t.Fatalf("%s", e)
		}
		s.mustRun("print('alive')")
	})
	t.Run("rlimit", func(t *testing.T) {
		t.Parallel()
		s := open(t, map[string]any{"memory_limit": "256MiB", "disable_isolation": []string{featCgMemory}}, nil)
		_, m := s.health()
		if m[featCgMemory].Enforced || !strings.Contains(m[featRlimits].Detail, "RLIMIT_AS=268435456") {
			t.Fatalf("report: %+v %+v", m[featCgMemory], m[featRlimits])
		}
		s.mustRun("before = 1")
		e := s.run(hog, 0)
		if e.res.Status != runner.StatusLimitExceeded || e.res.FinishReason != "memory_limit" || e.res.StateReset ||
			!strings.Contains(e.res.Error, "MemoryError") {
			t.Fatalf("%s", e)
		}
		// State is kept, including the list that filled the memory: freeing it works.
		s.mustRun("del x\nimport gc; gc.collect()\nprint(before)")
		s.mustRun("y = ' ' * 10**7")
	})
}

func TestForkBomb(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"max_processes": 24, "interrupt_grace": "500ms"}, nil)
	e := s.run("import os\nwhile True:\n    os.fork()", 30*time.Second)
	if e.res.Status != runner.StatusError || !strings.Contains(e.res.Error, "BlockingIOError") ||
		!strings.Contains(e.res.Error, "Resource temporarily unavailable") {
		t.Fatalf("%s", e)
	}
	// The children that could be made exit on their own; the sandbox holds init and the
	// worker again.
	waitFor(t, 10*time.Second, "the bomb's processes to exit", func() bool {
		return len(s.sandboxProcs(t)) <= 2
	})
	// One that swallows every error runs until the timeout. Depending on where the
	// interrupt lands the worker stops (state kept) or is killed (state reset); either way
	// no process of the bomb is left.
	e = s.run("import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass", 2*time.Second)
	if e.res.Status != runner.StatusTimeout {
		t.Fatalf("%s", e)
	}
	waitFor(t, 10*time.Second, "the bomb's processes to be killed", func() bool {
		return len(s.sandboxProcs(t)) <= 2
	})
	s.mustRun("print('alive')")
}

// sandboxProcs lists the processes in the session's pids cgroup (init included).
func (s *testSession) sandboxProcs(t testing.TB) []int {
	t.Helper()
	dir := s.cgroupDir(t, "pids")
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// cgroupDir finds the session's cgroup of a controller on the host.
func (s *testSession) cgroupDir(t testing.TB, ctrl string) string {
	t.Helper()
	mounts, err := cgroupV1Mounts()
	if err != nil || mounts[ctrl] == "" {
		t.Skipf("no cgroup v1 %s controller here", ctrl)
	}
	matches, _ := filepath.Glob(filepath.Join(mounts[ctrl], "*", fmt.Sprintf("%s%d-*", cgroupPrefix, s.pid())))
	more, _ := filepath.Glob(filepath.Join(mounts[ctrl], "*", "*", fmt.Sprintf("%s%d-*", cgroupPrefix, s.pid())))
	top, _ := filepath.Glob(filepath.Join(mounts[ctrl], fmt.Sprintf("%s%d-*", cgroupPrefix, s.pid())))
	matches = append(append(matches, more...), top...)
	if len(matches) != 1 {
		t.Fatalf("cgroups of plugin %d in %s: %v", s.pid(), ctrl, matches)
	}
	return matches[0]
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); ; {
		if cond() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHugeFile(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"max_file_bytes": "10MiB"}, nil)
	code := "chunk = b'\\0' * 2**20\nwith open('big', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(chunk)"
	e := s.run(code, 0)
	if e.res.Status != runner.StatusLimitExceeded || e.res.FinishReason != "file_size_limit" || e.res.StateReset ||
		!strings.Contains(e.res.Error, "File too large") {
		t.Fatalf("%s", e)
	}
	fi, err := os.Stat(s.workerPath(filepath.Join(s.sess.WorkDir, "big")))
	if err != nil || fi.Size() > 10<<20 {
		t.Errorf("file on disk: %v %v", fi, err)
	}
	s.mustRun("import os; os.remove('big'); print('alive')")
}

func TestNetwork(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			got <- line
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	code := fmt.Sprintf("import socket\ntry:\n    c = socket.create_connection(('127.0.0.1', %d), timeout=3)\n    c.sendall(b'hello from the sandbox\\n')\n    c.close()\n    print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)", port)

	off := open(t, nil, nil)
	if _, m := off.health(); !m[featNetNS].Enforced {
		t.Fatalf("network off but net_ns not enforced: %+v", m[featNetNS])
	}
	if e := off.mustRun(code); !strings.HasPrefix(e.stdout, "refused") {
		t.Errorf("network off: %s", e)
	}
	if e := off.mustRun("import socket; socket.if_nameindex()"); e.res.Output != "[(1, 'lo')]" {
		t.Errorf("interfaces with network off: %s", e.res.Output)
	}
	select {
	case l := <-got:
		t.Fatalf("the host's listener got %q from a sandbox without network", l)
	default:
	}

	on := open(t, nil, func(s *runner.Session) { s.AllowNetwork = true })
	if _, m := on.health(); m[featNetNS].Enforced || !strings.Contains(m[featNetNS].Detail, "allows network") {
		t.Errorf("network on: net_ns reported %+v", m[featNetNS])
	}
	if e := on.mustRun(code); e.stdout != "connected\n" {
		t.Errorf("network on: %s", e)
	}
	select {
	case l := <-got:
		if l != "hello from the sandbox\n" {
			t.Errorf("listener got %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Error("the listener got nothing with network on")
	}
}

// TestHostSocketsHidden: Unix sockets of host services in /tmp and /run, open to every
// user, are out of the code's reach with the network off and on (Landlock does not govern
// connecting to a socket; the sandbox's /tmp and /run are empty tmpfs but for its own
// paths), while the code's own work dir, under /tmp here, stays usable.
func TestHostSocketsHidden(t *testing.T) {
	t.Parallel()
	var paths []string
	accepted := make(chan string, 8)
	for _, parent := range []string{"/tmp", "/run"} {
		dir, err := os.MkdirTemp(parent, "limit-sock-")
		if err != nil {
			t.Logf("no socket in %s: %v", parent, err)
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "s")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if err := os.Chmod(sock, 0o777); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- sock
				c.Close()
			}
		}()
		// Reachable from the host, so only the sandbox can keep the code from it.
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		<-accepted
		paths = append(paths, sock)
	}
	if len(paths) == 0 {
		t.Fatal("no socket to try")
	}
	code := "import socket\nfor p in " + pyList(paths) + ":\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n        print('connected', p)\n    except OSError as e:\n        print(type(e).__name__)\n" +
		"open('mine.txt', 'w').write('x')\nprint(open('mine.txt').read())"
	want := strings.Repeat("FileNotFoundError\n", len(paths)) + "x\n"
	for _, network := range []bool{false, true} {
		s := open(t, nil, func(s *runner.Session) { s.AllowNetwork = network })
		_, m := s.health()
		if !m[featMountNS].Enforced {
			// Without a mount namespace nothing hides them: the report must not say otherwise.
			if strings.Contains(m[featMountNS].Detail, "hidden") {
				t.Fatalf("mount_ns not enforced yet claims: %+v", m[featMountNS])
			}
			t.Skipf("no mount namespace here (%s): host sockets stay reachable", m[featMountNS].Detail)
		}
		if !strings.Contains(m[featMountNS].Detail, "/tmp") || !strings.Contains(m[featMountNS].Detail, "sockets unreachable") {
			t.Errorf("mount_ns detail does not say what it hides: %q", m[featMountNS].Detail)
		}
		if e := s.mustRun(code); e.stdout != want {
			t.Errorf("network %v: %s", network, e)
		}
	}
	select {
	case p := <-accepted:
		t.Fatalf("a sandbox connected to the host's %s", p)
	default:
	}
}

// TestSocketDirHidden: the plugin's socket directory (limitd's data_dir/run, told through
// base.LaunchConfig.SocketDir), outside /tmp and /run, holds the sockets of limitd's
// plugins, this one's gRPC socket included. The code cannot connect to them (Landlock
// does not govern a connect): it finds none, with the directory and a socket open to
// every user, so that only the sandbox's mounts keep it out.
func TestSocketDirHidden(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// The test's working directory (the package's): not under a directory hidden anyway.
	dir, err := os.MkdirTemp(wd, "run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", mine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := os.Chmod(mine, 0o777); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	l := launchLC(t, nil, base.LaunchConfig{Plugins: runner.PluginSet(), SocketDir: dir})
	theirs, _ := filepath.Glob(filepath.Join(dir, "plugin*"))
	if len(theirs) != 1 {
		t.Fatalf("the plugin's gRPC sockets in its socket dir %s: %v, want one", dir, theirs)
	}
	s := openOn(t, l, nil)
	_, m := s.health()
	if !m[featMountNS].Enforced {
		t.Skipf("no mount namespace here (%s)", m[featMountNS].Detail)
	}
	if !strings.Contains(m[featMountNS].Detail, dir) {
		t.Errorf("mount_ns detail does not name the socket dir %s: %q", dir, m[featMountNS].Detail)
	}
	paths := []string{mine, theirs[0]}
	code := "import socket\nfor p in " + pyList(paths) + ":\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n        print('connected', p)\n    except OSError as e:\n        print(type(e).__name__)\n"
	if e := s.mustRun(code); e.stdout != "FileNotFoundError\nFileNotFoundError\n" {
		t.Errorf("%s", e)
	}
	select {
	case <-accepted:
		t.Fatal("the sandbox connected to a socket of the plugins' socket dir")
	default:
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"env": map[string]string{"FROM_CONFIG": "1", "BOTH": "config"}}, func(s *runner.Session) {
		s.Env = map[string]string{"FROM_SESSION": "2", "BOTH": "session"}
	})
	e := s.mustRun("import os\nsorted(os.environ.items())")
	want := "[('BOTH', 'session'), ('FROM_CONFIG', '1'), ('FROM_SESSION', '2')]"
	if e.res.Output != want {
		t.Errorf("environment %s, want %s", e.res.Output, want)
	}
	// Nothing of the plugin's environment (which holds a secret) is reachable: not in the
	// environment, not through init's /proc entry.
	e = s.mustRun("import os\nprint(os.environ.get('LIMIT_TEST_SECRET'))\ntry:\n    print(open('/proc/1/environ').read())\nexcept OSError as e:\n    print(type(e).__name__)")
	if e.stdout != "None\nPermissionError\n" || strings.Contains(e.stdout, "hunter2") {
		t.Errorf("%s", e)
	}
}

// TestNoInheritedDescriptors: a descriptor the plugin inherited without close-on-exec
// (as from a host whose own parent left one open) never reaches the sandboxed code, which
// has its stdin, stdout, stderr and the two protocol pipes, nothing else.
func TestNoInheritedDescriptors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("HOST-ONLY"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No O_CLOEXEC: every process this test starts from now on inherits it.
	fd, err := syscall.Open(secret, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	s := open(t, nil, nil)
	e := s.mustRun(`import os
fds = []
for f in sorted(os.listdir('/proc/self/fd'), key=int):
    try:
        target = os.readlink('/proc/self/fd/' + f)
    except OSError:
        continue  # the listing's own descriptor, closed by now
    if not target.startswith('/proc/'):
        fds.append(int(f))
print(fds)`)
	if e.stdout != "[0, 1, 2, 3, 4]\n" {
		t.Fatalf("the code's descriptors: %s (descriptor %d of the test process holds the secret)", e, fd)
	}
}

func TestWorkDirIsolation(t *testing.T) {
	t.Parallel()
	// A directory on the host that any user may write: only Landlock stops the sandbox.
	open777 := worldWritableDir(t)
	s := open(t, nil, nil)
	wd := s.sess.WorkDir
	e := s.mustRun("import os\nopen('mine.txt', 'w').write('x')\nos.mkdir('sub')\nos.getcwd()")
	if e.res.Output != fmt.Sprintf("%q", wd) && e.res.Output != "'"+wd+"'" {
		t.Errorf("cwd %s, want %s", e.res.Output, wd)
	}
	if fi, err := os.Stat(s.workerPath(filepath.Join(wd, "mine.txt"))); err != nil || fi.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Errorf("the file the code wrote: %v %v", fi, err)
	}
	probe := `import os
def try_write(p):
    try:
        with open(p, 'w') as f:
            f.write('x')
        return 'WROTE'
    except OSError as e:
        return type(e).__name__
for p in %s:
    print(p, try_write(p))`
	targets := []string{
		filepath.Join(open777, "escaped.txt"),
		filepath.Join(filepath.Dir(wd), "escaped.txt"),
		"/tmp/escaped.txt", "/etc/escaped.txt", "/usr/escaped.txt",
		filepath.Join(wd, "sub", "..", "..", "escaped.txt"),
	}
	e = s.mustRun(fmt.Sprintf(probe, pyList(targets)))
	if strings.Contains(e.stdout, "WROTE") {
		t.Errorf("wrote outside the work dir:\n%s", e.stdout)
	}
	if _, err := os.Stat(filepath.Join(open777, "escaped.txt")); err == nil {
		t.Error("the file appeared in the world-writable directory")
	}
	// /dev/shm is the sandbox's own: what the code puts there is not on the host's.
	shm := fmt.Sprintf("/dev/shm/limit-python-probe-%d", time.Now().UnixNano())
	if e := s.mustRun(fmt.Sprintf(probe, pyList([]string{shm}))); !strings.Contains(e.stdout, "WROTE") {
		t.Errorf("the sandbox's /dev/shm is not writable: %s", e.stdout)
	}
	if _, err := os.Stat(shm); err == nil {
		os.Remove(shm)
		t.Errorf("%s written in the sandbox appeared on the host", shm)
	}
	// Writes inside the work dir still work, through any path that stays inside.
	e = s.mustRun(fmt.Sprintf(probe, pyList([]string{filepath.Join(wd, "sub", "ok.txt"), "sub/../ok2.txt"})))
	if strings.Count(e.stdout, "WROTE") != 2 {
		t.Errorf("writes inside the work dir:\n%s", e.stdout)
	}
}

func pyList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// TestSessionsAreIsolated runs two sessions at once: neither sees the other's files,
// variables or processes.
func TestSessionsAreIsolated(t *testing.T) {
	t.Parallel()
	a := open(t, nil, nil)
	b := open(t, nil, nil)
	var wg sync.WaitGroup
	for _, s := range []*testSession{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := s.run(fmt.Sprintf("secret = %q\nopen('secret.txt', 'w').write(secret)\nimport subprocess\nsleeper = subprocess.Popen(['sleep', '30'])\nimport os\nos.getpid()", s.sess.ID), 0)
			if e.res.Status != runner.StatusOK {
				t.Errorf("%s", e)
			}
		}()
	}
	wg.Wait()
	spy := `import os
out = []
try:
    out.append(open(%q).read())
except OSError as e:
    out.append(type(e).__name__)
try:
    out.append(os.listdir(%q))
except OSError as e:
    out.append(type(e).__name__)
out.append(secret)
procs = []
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            procs.append(open('/proc/%%s/cmdline' %% p).read().replace('\0', ' ').strip()[:40])
        except OSError:
            procs.append('?')
out.append(sorted(procs))
print(out)`
	for _, pair := range [][2]*testSession{{a, b}, {b, a}} {
		me, other := pair[0], pair[1]
		e := me.mustRun(fmt.Sprintf(spy, filepath.Join(other.sess.WorkDir, "secret.txt"), other.sess.WorkDir))
		if strings.Contains(e.stdout, other.sess.ID) {
			t.Errorf("session %s saw the other's secret: %s", me.sess.ID, e.stdout)
		}
		// Its own variable, its own processes: init, the worker and one sleep.
		if !strings.Contains(e.stdout, me.sess.ID) || strings.Count(e.stdout, "sleep 30") != 1 || strings.Count(e.stdout, "'/") != 2 {
			t.Errorf("session %s: %s", me.sess.ID, e.stdout)
		}
		// Its own secret is still there.
		if e := me.mustRun("secret"); e.res.Output != fmt.Sprintf("'%s'", me.sess.ID) {
			t.Errorf("own secret: %s", e.res.Output)
		}
	}
}

// TestHealthMatchesReality checks each isolation feature Health reports as enforced from
// inside the sandbox, and that features reported as not enforced indeed are not (a
// feature turned off with disable_isolation is really off and said to be).
func TestHealthMatchesReality(t *testing.T) {
	t.Parallel()
	open777 := worldWritableDir(t)
	cases := []struct {
		name    string
		disable []string
	}{
		{"all", nil},
		{"none", []string{featPIDNS, featMountNS, featIPCNS, featUTSNS, featNetNS, featCgMemory, featCgPids, featCgCPU, featRlimits, featUID, featLandlock, featSeccomp, featDisk}},
		{"some", []string{featLandlock, featSeccomp, featNetNS, featCgPids}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, map[string]any{"disable_isolation": c.disable, "allow_weak_isolation": true, "max_processes": 40}, nil)
			h, m := s.health()
			if !h.Healthy || len(h.Isolation) != len(featureNames) {
				t.Fatalf("health %+v", h)
			}
			checkReport(t, s, m, open777, 0)
			for _, name := range featureNames {
				f := m[name]
				for _, d := range c.disable {
					if d == name && (f.Enforced || !strings.Contains(f.Detail, "disabled")) {
						t.Errorf("%s was disabled but is reported %+v", name, f)
					}
				}
			}
		})
	}
}

// checkReport compares every feature of a health report with what the code observes.
func checkReport(t *testing.T, s *testSession, m map[string]runner.IsolationFeature, open777 string, pluginUID int) {
	t.Helper()
	facts := s.facts(t, open777)
	for _, name := range featureNames {
		f := m[name]
		if f.Detail == "" || f.Detail == "not checked" {
			t.Errorf("%s: no detail: %+v", name, f)
		}
		real, why := facts.holds(name, pluginUID)
		if f.Enforced != real {
			t.Errorf("%s reported enforced=%v (%s) but in the sandbox it is %v: %s", name, f.Enforced, f.Detail, real, why)
		}
	}
}

// worldWritableDir makes a directory any user may write: only Landlock keeps the
// sandbox out of it.
func worldWritableDir(t *testing.T) string {
	t.Helper()
	// Outside the directories the sandbox hides (/tmp, /var/tmp, /run), so that only
	// Landlock stands between the code and it: beside the package's sources, else in
	// /var/cache (as root).
	var parents []string
	if wd, err := os.Getwd(); err == nil && !underAny(wd, hiddenDirs) {
		parents = append(parents, wd)
	}
	parents = append(parents, "/var/cache")
	for _, parent := range parents {
		dir, err := os.MkdirTemp(parent, "limit-python-world-writable-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Fatalf("no directory outside %v to make world-writable in %v", hiddenDirs, parents)
	return ""
}

// sandboxFacts is what the code observes inside the sandbox.
type sandboxFacts map[string]string

func (s *testSession) facts(t *testing.T, open777 string) sandboxFacts {
	t.Helper()
	code := fmt.Sprintf(`import os, socket, resource, ctypes
facts = {}
for ns in ('pid', 'mnt', 'ipc', 'uts', 'net'):
    facts['ns_' + ns] = os.readlink('/proc/self/ns/' + ns)
facts['pid'] = str(os.getpid())
facts['nprocs'] = str(len([p for p in os.listdir('/proc') if p.isdigit()]))
facts['hostname'] = socket.gethostname()
facts['ifaces'] = ','.join(n for _, n in socket.if_nameindex())
facts['cgroup'] = open('/proc/self/cgroup').read().replace('\n', ';')
facts['nproc'] = str(resource.getrlimit(resource.RLIMIT_NPROC)[0])
facts['fsize'] = str(resource.getrlimit(resource.RLIMIT_FSIZE)[0])
facts['uid'] = str(os.getuid())
facts['wd_uid'] = str(os.stat('.').st_uid)
st = os.statvfs('.')
facts['wd_bytes'] = str(st.f_blocks * st.f_frsize)
facts['wd_own_fs'] = str(os.stat('.').st_dev != os.stat('/').st_dev)
try:
    open(%q, 'w').write('x')
    facts['escape'] = 'wrote'
except OSError as e:
    facts['escape'] = type(e).__name__
for line in open('/proc/self/status'):
    if line.startswith('Seccomp:'):
        facts['seccomp'] = line.split()[1]
libc = ctypes.CDLL(None, use_errno=True)
facts['unshare'] = str(libc.unshare(0x20000000) or 0) + '/' + str(ctypes.get_errno())
for k, v in sorted(facts.items()):
    print(k + '=' + v)`, filepath.Join(open777, fmt.Sprintf("probe-%d", time.Now().UnixNano())))
	e := s.mustRun(code)
	f := sandboxFacts{}
	for _, line := range strings.Split(strings.TrimSpace(e.stdout), "\n") {
		k, v, _ := strings.Cut(line, "=")
		f[k] = v
	}
	return f
}

// holds tells whether a feature is in force according to what the code observed; the
// plugin ran as pluginUID.
func (f sandboxFacts) holds(name string, pluginUID int) (bool, string) {
	hostNS := func(ns string) string { l, _ := os.Readlink("/proc/self/ns/" + ns); return l }
	cg := f["cgroup"]
	inCgroup := func(ctrl string) bool {
		for _, line := range strings.Split(cg, ";") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+ctrl+",") && strings.Contains(parts[2], cgroupPrefix) {
				return true
			}
		}
		return false
	}
	switch name {
	case featPIDNS:
		// Its own pid namespace, with a /proc that shows only the sandbox.
		n, _ := strconv.Atoi(f["nprocs"])
		return f["ns_pid"] != hostNS("pid") && n < 10, f["ns_pid"] + " nprocs=" + f["nprocs"]
	case featMountNS:
		return f["ns_mnt"] != hostNS("mnt"), f["ns_mnt"]
	case featIPCNS:
		return f["ns_ipc"] != hostNS("ipc"), f["ns_ipc"]
	case featUTSNS:
		return f["ns_uts"] != hostNS("uts") && f["hostname"] == "limit-python", f["ns_uts"] + " " + f["hostname"]
	case featNetNS:
		return f["ns_net"] != hostNS("net") && f["ifaces"] == "lo", f["ns_net"] + " " + f["ifaces"]
	case featCgMemory:
		return inCgroup("memory"), cg
	case featCgPids:
		return inCgroup("pids"), cg
	case featCgCPU:
		return inCgroup("cpu"), cg
	case featRlimits:
		return f["nproc"] == "40" || f["fsize"] == strconv.Itoa(1<<30), "nproc=" + f["nproc"] + " fsize=" + f["fsize"]
	case featUID:
		return f["uid"] != strconv.Itoa(pluginUID) && f["uid"] != "0" && f["uid"] == f["wd_uid"], "uid=" + f["uid"] + " work dir uid=" + f["wd_uid"]
	case featLandlock:
		// The directory is world-writable: only Landlock can refuse the write.
		return f["escape"] == "PermissionError", f["escape"]
	case featDisk:
		// The work dir is a filesystem of its own, no larger than the default 1 GiB.
		n, _ := strconv.ParseUint(f["wd_bytes"], 10, 64)
		return f["wd_own_fs"] == "True" && n <= 1<<30, "own filesystem: " + f["wd_own_fs"] + ", bytes=" + f["wd_bytes"]
	case featSeccomp:
		// unshare(CLONE_NEWPID) fails with EPERM under the filter; an unprivileged process
		// gets EPERM anyway, so root (uid disabled) is the case that tells.
		return f["seccomp"] == "2", "Seccomp: " + f["seccomp"] + " unshare: " + f["unshare"]
	}
	return false, "unknown feature"
}

func TestCPULimitThrottles(t *testing.T) {
	t.Parallel()
	s := open(t, map[string]any{"cpu_limit": 0.1}, nil)
	if _, m := s.health(); !m[featCgCPU].Enforced {
		t.Skipf("no cpu cgroup: %s", m[featCgCPU].Detail)
	}
	stat := func() int {
		b, err := os.ReadFile(filepath.Join(s.cgroupDir(t, "cpu"), "cpu.stat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatalf("no nr_throttled in cpu.stat: %s", b)
		return 0
	}
	before := stat()
	s.mustRun("import time\nend = time.time() + 1\nwhile time.time() < end:\n    pass")
	if after := stat(); after <= before {
		t.Errorf("a busy second at 0.1 cores was never throttled (nr_throttled %d -> %d)", before, after)
	}
}

func TestRequireIsolation(t *testing.T) {
	t.Parallel()
	l := launch(t, map[string]any{"require_isolation": []string{featNetNS}})
	err := l.r.OpenSession(context.Background(), runner.Session{ID: "needs-net-ns", WorkDir: newWorkDir(t), AllowNetwork: true})
	if err == nil || !strings.Contains(err.Error(), "required isolation is not enforced") || !strings.Contains(err.Error(), "net_ns") {
		t.Fatalf("open session: %v", err)
	}
}

func TestVenv(t *testing.T) {
	t.Parallel()
	// The venv must be readable by the sandbox's uid: outside the 0700 test directories.
	dir, err := os.MkdirTemp("", "limit-python-venv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(dir, "venv")
	if out, err := execCommand("/usr/bin/python3", "-m", "venv", "--without-pip", venv); err != nil {
		t.Skipf("cannot create a venv here (python3-venv missing?): %v %s", err, out)
	}
	s := open(t, map[string]any{"venv": venv}, nil)
	if e := s.mustRun("import sys\nsys.prefix"); e.res.Output != "'"+venv+"'" {
		t.Errorf("sys.prefix %s, want %s", e.res.Output, venv)
	}
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestCleanup checks that nothing of a session outlives it: after CloseSession, after the
// plugin is stopped gracefully, and after it is killed outright.
func TestCleanup(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T) (*testSession, int) {
		s := open(t, nil, nil)
		e := s.mustRun("import subprocess, os\nsubprocess.Popen(['sleep', '60'])\nopen('left.txt', 'w').write('x')\nos.getuid()")
		uid, err := strconv.Atoi(e.res.Output)
		if err != nil || uid == 0 {
			t.Fatalf("uid %q", e.res.Output)
		}
		if len(processesOf(uid)) < 2 {
			t.Fatalf("expected the worker and sleep running as %d", uid)
		}
		return s, uid
	}
	cgroups := pluginCgroups
	lockFile := func(uid int) string { return filepath.Join(uidLockDir, fmt.Sprintf("uid-%d.lock", uid)) }

	t.Run("close session", func(t *testing.T) {
		t.Parallel()
		s, uid := start(t)
		if err := s.r.CloseSession(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ps := processesOf(uid); len(ps) > 0 {
			t.Errorf("processes of uid %d left: %v", uid, ps)
		}
		if cg := cgroups(s.pid()); len(cg) > 0 {
			t.Errorf("cgroups left: %v", cg)
		}
		if _, err := os.Stat(s.sess.WorkDir); !os.IsNotExist(err) {
			t.Errorf("work dir still there: %v", err)
		}
		if _, err := os.Stat(lockFile(uid)); !os.IsNotExist(err) {
			t.Errorf("uid lock left: %v", err)
		}
		if e := s.run("print(1)", 0); e.err == nil {
			t.Errorf("executed after CloseSession: %s", e)
		}
	})
	t.Run("plugin stopped", func(t *testing.T) {
		t.Parallel()
		s, uid := start(t)
		s.pc.Kill() // graceful: the host closes the connection, the plugin cleans up
		waitFor(t, 10*time.Second, "the sandbox's processes to exit", func() bool { return len(processesOf(uid)) == 0 })
		if cg := cgroups(s.pid()); len(cg) > 0 {
			t.Errorf("cgroups left: %v", cg)
		}
		// The session may go on in another process: its files stay, none owned by its uid.
		if err := sessionFileExists(s.sess.WorkDir, "left.txt"); err != nil {
			t.Errorf("the session's file is gone: %v", err)
		}
		if owned := ownedBy(t, filepath.Dir(s.sess.WorkDir), uid); len(owned) > 0 {
			t.Errorf("files still owned by uid %d: %v", uid, owned)
		}
	})
	t.Run("plugin killed", func(t *testing.T) {
		t.Parallel()
		s, uid := start(t)
		pid := s.pid()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// init notices the plugin is gone and takes the sandbox down with it.
		waitFor(t, 10*time.Second, "the sandbox's processes to exit", func() bool { return len(processesOf(uid)) == 0 })
		// A later plugin removes the dead one's empty cgroups and its uid lock file (one of
		// a parallel test may have done it already).
		later := open(t, nil, nil)
		if cg := cgroups(pid); len(cg) > 0 {
			t.Errorf("stale cgroups not swept: %v", cg)
		}
		if e := later.mustRun("import os; os.getuid()"); e.res.Output != strconv.Itoa(uid) {
			if _, err := os.Stat(lockFile(uid)); !os.IsNotExist(err) {
				t.Errorf("stale uid lock not swept: %v", err)
			}
		}
	})
}

// processesOf lists the pids of processes running as uid.
func processesOf(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if fs := strings.Fields(v); len(fs) > 0 && fs[0] == strconv.Itoa(uid) {
					out = append(out, pid)
				}
			}
		}
	}
	return out
}

// ownedBy lists the files under dir owned by uid.
func ownedBy(t testing.TB, dir string, uid int) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) == uid {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestHealthBeforeSession checks the probe sandbox Health starts when no session is open,
// and that it leaves nothing behind.
func TestHealthBeforeSession(t *testing.T) {
	t.Parallel()
	l := launch(t, nil)
	h, err := l.r.Health(context.Background())
	if err != nil || !h.Healthy || len(h.Isolation) != len(featureNames) || !strings.Contains(h.Message, "probe") {
		t.Fatalf("%+v %v", h, err)
	}
	for _, f := range h.Isolation {
		if f.Detail == "" || f.Detail == "not checked" {
			t.Errorf("%s not checked: %+v", f.Name, f)
		}
	}
	mounts, _ := cgroupV1Mounts()
	for _, m := range mounts {
		for _, pat := range []string{"*", "*/*", "*/*/*"} {
			if got, _ := filepath.Glob(filepath.Join(m, pat, fmt.Sprintf("%s%d-*", cgroupPrefix, l.pid()))); len(got) > 0 {
				t.Errorf("probe cgroups left: %v", got)
			}
		}
	}
}

// TestUnprivilegedPlugin runs the plugin as an ordinary user (nobody): it cannot create
// namespaces, cgroups or uids, and must say so, while Landlock, seccomp and rlimits still
// hold, and the report matches what the code observes.
func TestUnprivilegedPlugin(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the plugin as another user")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "limit-python-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "limit-runner-python")
	data, err := os.ReadFile(pluginBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(dir, "work")
	if err := os.Mkdir(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(wd, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	launchAsNobody := func(cfg string) *launched {
		pc, cmd := base.NewClientCmd(base.LaunchConfig{Path: bin, Kind: base.KindRunner, Plugins: runner.PluginSet(), Env: []string{testSecret}})
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
		t.Cleanup(pc.Kill)
		raw, err := base.Dispense(context.Background(), pc, base.KindRunner)
		if err != nil {
			t.Fatal(err)
		}
		l := &launched{r: raw.(*runner.Client), pc: pc, cmd: cmd}
		if ds := l.r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(cfg)}); ds.HasErrors() {
			t.Fatal(ds.Err())
		}
		return l
	}

	// By default the runner refuses to run code it cannot keep from the host and the API,
	// and its health says so before any session tries.
	strict := launchAsNobody(`{"interrupt_grace": "300ms"}`)
	h, err := strict.r.Health(context.Background())
	if err != nil || h.Healthy || !strings.Contains(h.Message, "sessions are refused") || !strings.Contains(h.Message, "uid (") ||
		!strings.Contains(h.Message, "allow_weak_isolation") {
		t.Errorf("health of an unprivileged runner: %+v %v", h, err)
	}
	err = strict.r.OpenSession(context.Background(), runner.Session{ID: "refused", WorkDir: wd})
	if err == nil {
		t.Fatal("an unprivileged runner opened a session without allow_weak_isolation")
	}
	for _, want := range []string{"uid (", "mount_ns (", "pid_ns (", "net_ns (", "run limitd as root", "allow_weak_isolation = true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}

	// With allow_weak_isolation it runs the code as its own uid, and says so.
	l := launchAsNobody(`{"interrupt_grace": "300ms", "allow_weak_isolation": true}`)
	if h, err := l.r.Health(context.Background()); err != nil || h.Healthy || !strings.Contains(h.Message, "WEAK ISOLATION") {
		t.Errorf("health of an unprivileged runner with allow_weak_isolation: %+v %v", h, err)
	}
	s := &testSession{launched: l, t: t, sess: runner.Session{ID: "unprivileged", WorkDir: wd}}
	if err := l.r.OpenSession(context.Background(), s.sess); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.r.CloseSession(context.Background()) })

	h, m := s.health()
	for _, f := range h.Isolation {
		t.Logf("%-14s %-5v %s", f.Name, f.Enforced, f.Detail)
	}
	if !h.Healthy || !strings.Contains(h.Message, "WEAK ISOLATION") {
		t.Errorf("health of the open session: %+v", h)
	}
	for _, name := range []string{featPIDNS, featMountNS, featNetNS, featCgMemory, featUID} {
		if m[name].Enforced {
			t.Errorf("%s reported enforced for an unprivileged plugin: %+v", name, m[name])
		}
	}
	for _, name := range []string{featLandlock, featSeccomp, featRlimits} {
		if !m[name].Enforced {
			t.Errorf("%s not enforced for an unprivileged plugin: %+v", name, m[name])
		}
	}
	checkReport(t, s, m, worldWritableDir(t), nobody)

	// Without a pid namespace the kill still takes every process of the execution down.
	e := s.run("import subprocess\nsubprocess.Popen(['sleep', '61'])\nwhile True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass", 300*time.Millisecond)
	if e.res.Status != runner.StatusTimeout || !e.res.StateReset {
		t.Fatalf("%s", e)
	}
	waitFor(t, 5*time.Second, "the execution's processes to be killed", func() bool {
		for _, pid := range processesOf(nobody) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x0061\x00" {
				return false
			}
		}
		return true
	})
	s.mustRun("print('alive')")
}

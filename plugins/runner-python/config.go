package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/bytesize"
	"github.com/limitgraph/limit/sdk/runner"
)

// Defaults of the config attributes; ConfigSchema publishes them to the host.
const (
	defaultTimeout        = "30s"
	defaultMemoryLimit    = "512MiB"
	minMemoryLimit        = 64 << 20
	defaultCPULimit       = 1.0
	defaultMaxProcesses   = 64
	defaultMaxOutputBytes = "1MiB"
	defaultMaxFileBytes   = "1GiB"
	defaultMaxDiskBytes   = "1GiB"
	defaultInterruptGrace = "2s"
	// systemPython is the interpreter used when none is configured: on these machines the
	// python3 on PATH is a pyenv shim costing ~120 ms per start, /usr/bin/python3 ~14 ms.
	systemPython = "/usr/bin/python3"
)

// flexString is a config value written either as a string or as a number (sizes may be
// given as "512MiB" or as a count of bytes); it keeps the text for parsing.
type flexString string

// UnmarshalJSON accepts a JSON string or number.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return &json.UnmarshalTypeError{Value: "value " + string(b), Type: reflect.TypeOf("")}
	}
	*f = flexString(n.String())
	return nil
}

// rawConfig is the config block as the host sends it. Pointers tell an absent attribute
// (default applies) from one set to its zero value.
type rawConfig struct {
	Interpreter      *string           `json:"interpreter"`
	Venv             *string           `json:"venv"`
	Env              map[string]string `json:"env"`
	Timeout          *string           `json:"timeout"`
	MemoryLimit      *flexString       `json:"memory_limit"`
	CPULimit         *float64          `json:"cpu_limit"`
	MaxProcesses     *float64          `json:"max_processes"`
	MaxOutputBytes   *flexString       `json:"max_output_bytes"`
	MaxFileBytes     *flexString       `json:"max_file_bytes"`
	MaxDiskBytes     *flexString       `json:"max_disk_bytes"`
	InterruptGrace   *string           `json:"interrupt_grace"`
	DisableIsolation []string          `json:"disable_isolation"`
	RequireIsolation []string          `json:"require_isolation"`
	AllowWeak        *bool             `json:"allow_weak_isolation"`
}

// settings is a checked configuration with every default applied and the interpreter
// resolved.
type settings struct {
	// interpreter is the absolute path the worker is started with.
	interpreter string
	// roots are directories the sandbox must be able to read besides the system paths:
	// a venv and an interpreter installed outside them.
	roots []string
	env   map[string]string
	// limits are the defaults of every session; a session's non-zero limits override them.
	limits         runner.Limits
	interruptGrace time.Duration
	disable        map[string]bool
	require        []string
	// allowWeak lets sessions open without the baseline isolation (baselineFeatures).
	allowWeak bool
	dataDir   string
}

// configSchema describes the config block; the descriptions are the user documentation.
func configSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "interpreter", Type: "string",
			Description: "Python interpreter: an absolute path or a command name looked up on the plugin's PATH, resolved once to an absolute real path. Default: " + systemPython + " if it exists, else python3 on PATH. A wrapper script (such as a pyenv shim) is asked once for the interpreter it runs. Conflicts with venv.",
		},
		{
			Name: "venv", Type: "string",
			Description: "A virtual environment directory; the worker runs <venv>/bin/python, so the venv's packages are importable. It must be readable by other users when the plugin runs as root, since the code runs under a per-session uid. Conflicts with interpreter.",
		},
		{
			Name: "env", Type: "map(string)", Default: map[string]string{},
			Description: "Environment variables of the executed code. With the session's own variables (which win on a clash), these are the only variables the code sees: nothing of the host's or the plugin's environment is passed.",
		},
		{
			Name: "timeout", Type: "string", Default: defaultTimeout,
			Description: "Default time limit of one execution, as a duration such as \"30s\" or \"500ms\"; a session or an execution may set its own. When it passes the code is interrupted (KeyboardInterrupt, session state kept); if it does not stop within interrupt_grace the worker is killed and restarted (state_reset in the result).",
		},
		{
			Name: "memory_limit", Type: "string", Default: defaultMemoryLimit,
			Description: "Memory of a session's sandbox (the worker and every process it starts, page cache included), as bytes or a size such as \"512MiB\" or \"2GB\". Enforced by a cgroup v1 memory controller (over it the kernel kills the worker, which is restarted) or, where there is none, by RLIMIT_AS on the worker (MemoryError, state kept). A session's own limit overrides it.",
		},
		{
			Name: "cpu_limit", Type: "number", Default: defaultCPULimit,
			Description: "CPU of a session's sandbox in cores, e.g. 0.5 or 2, enforced by the cgroup v1 cpu controller's CFS quota where present. A session's own limit overrides it.",
		},
		{
			Name: "max_processes", Type: "number", Default: defaultMaxProcesses,
			Description: "Most processes and threads the code may have at once, the worker included: RLIMIT_NPROC of the session's own uid (when the plugin runs as root), backed by a cgroup v1 pids limit. A session's own limit overrides it.",
		},
		{
			Name: "max_output_bytes", Type: "string", Default: defaultMaxOutputBytes,
			Description: "Most bytes of stdout and stderr (together) an execution returns, as bytes or a size such as \"1MiB\"; each stream is guaranteed a quarter of it (at most 64 KiB) whatever the other writes, and a stream that reaches its share is cut after a visible marker (the result says truncated). The expression value shown as the result's output and the error text (an exception's traceback) are each capped at the same size, the error keeping its start and end. A session's own limit overrides it.",
		},
		{
			Name: "max_file_bytes", Type: "string", Default: defaultMaxFileBytes,
			Description: "Largest file the code may write, as bytes or a size such as \"1GiB\" (RLIMIT_FSIZE; a write beyond it fails with \"File too large\"). It bounds each file, not the total. A session's own limit overrides it.",
		},
		{
			Name: "max_disk_bytes", Type: "string", Default: defaultMaxDiskBytes,
			Description: "Most bytes of a session's files in all, as bytes or a size such as \"1GiB\" (at least 8MiB), or 0 for no limit. The session's work dir is then an ext4 filesystem of its own of this size (a sparse image file beside the work dir, costing only what is written; its metadata takes a few percent), mounted in the sandbox: a write beyond it fails with \"No space left on device\", and the host's disk is untouched. Its files last as long as the session, across worker restarts. The size is fixed when the session first opens. Needs root, loop devices and mkfs.ext4 (e2fsprogs); Health reports disk_limit as not enforced, with the reason, where they are missing. A session's own limit overrides it.",
		},
		{
			Name: "interrupt_grace", Type: "string", Default: defaultInterruptGrace,
			Description: "How long interrupted code (timeout, cancel) has to stop before the worker is killed and restarted, as a duration such as \"2s\".",
		},
		{
			Name: "disable_isolation", Type: "list(string)", Default: []string{},
			Description: "UNSAFE: isolation features not to apply, by the names Health reports (" + strings.Join(featureNames, ", ") + "). For diagnosing a machine where a feature breaks the interpreter; Health then reports the feature as not enforced.",
		},
		{
			Name: "require_isolation", Type: "list(string)", Default: []string{},
			Description: "Isolation features that must be enforced besides the baseline (uid, mount_ns, pid_ns, net_ns, and landlock and seccomp where the kernel has them, which are always required unless allow_weak_isolation is set): opening a session fails, naming the feature and why, when one of these cannot be applied on this machine. Without it a missing feature outside the baseline is reported by Health and the session runs without it.",
		},
		{
			Name: "allow_weak_isolation", Type: "bool", Default: false,
			Description: "UNSAFE: open sessions even when the baseline isolation that keeps the code from the host and the API (uid, mount_ns, pid_ns, net_ns, and landlock and seccomp where the kernel has them) is not enforced, as when limitd does not run as root: the code then runs as the plugin's own user, with its files and network. Needed too for disable_isolation to name one of those. Without it such a session is refused, naming the missing features; with it Health reports the runner degraded.",
		},
	}}
}

// parseConfig decodes and checks a ConfigureRequest, collecting every problem it finds.
// It resolves the interpreter; with validate set it also starts it once, to report a
// broken interpreter at host start-up rather than at a session's first execution.
func parseConfig(req base.ConfigureRequest, validate bool) (settings, base.Diagnostics) {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return settings{}, ds
	}
	var ds base.Diagnostics
	set := settings{env: map[string]string{}, dataDir: req.DataDir, disable: map[string]bool{}}

	for k, v := range raw.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			ds = append(ds, base.Errorf([]string{"env", k}, "invalid environment variable %q: names must be non-empty without '=' or NUL, values without NUL", k))
			continue
		}
		set.env[k] = v
	}

	set.limits.Timeout = parseDurationAttr(&ds, "timeout", raw.Timeout, defaultTimeout)
	set.interruptGrace = parseDurationAttr(&ds, "interrupt_grace", raw.InterruptGrace, defaultInterruptGrace)
	set.limits.MemoryBytes = parseSizeAttr(&ds, "memory_limit", raw.MemoryLimit, defaultMemoryLimit)
	if m := set.limits.MemoryBytes; m != 0 && m < minMemoryLimit {
		ds = append(ds, base.Errorf([]string{"memory_limit"}, "memory_limit must be at least 64MiB, got %d bytes: below that the interpreter does not start in its sandbox", m))
	}
	set.limits.MaxOutputBytes = parseSizeAttr(&ds, "max_output_bytes", raw.MaxOutputBytes, defaultMaxOutputBytes)
	set.limits.MaxFileBytes = parseSizeAttr(&ds, "max_file_bytes", raw.MaxFileBytes, defaultMaxFileBytes)
	if raw.MaxDiskBytes == nil || strings.TrimSpace(string(*raw.MaxDiskBytes)) != "0" {
		set.limits.MaxDiskBytes = parseSizeAttr(&ds, "max_disk_bytes", raw.MaxDiskBytes, defaultMaxDiskBytes)
		if d := set.limits.MaxDiskBytes; d != 0 && d < minDiskBytes {
			ds = append(ds, base.Errorf([]string{"max_disk_bytes"}, "max_disk_bytes must be at least 8MiB (or 0 for no limit), got %d bytes: below that the filesystem's own metadata takes most of it", d))
		}
	}

	cpu := defaultCPULimit
	if raw.CPULimit != nil {
		cpu = *raw.CPULimit
	}
	if cpu <= 0 || math.IsInf(cpu, 0) || math.IsNaN(cpu) || cpu > 4096 {
		ds = append(ds, base.Errorf([]string{"cpu_limit"}, "cpu_limit must be a number of cores above 0, such as 0.5 or 2, got %v", cpu))
	} else {
		set.limits.CPUMillis = uint64(math.Round(cpu * 1000))
		if set.limits.CPUMillis == 0 {
			set.limits.CPUMillis = 1
		}
	}

	procs := float64(defaultMaxProcesses)
	if raw.MaxProcesses != nil {
		procs = *raw.MaxProcesses
	}
	if procs != math.Trunc(procs) || procs < 1 || procs > 1<<20 {
		ds = append(ds, base.Errorf([]string{"max_processes"}, "max_processes must be a whole number from 1 to %d, got %v", 1<<20, procs))
	} else {
		set.limits.MaxProcesses = uint32(procs)
	}

	set.allowWeak = raw.AllowWeak != nil && *raw.AllowWeak
	for i, name := range raw.DisableIsolation {
		switch {
		case !slices.Contains(featureNames, name):
			ds = append(ds, base.Errorf([]string{"disable_isolation", strconv.Itoa(i)}, "unknown isolation feature %q; known: %s", name, strings.Join(featureNames, ", ")))
			continue
		case slices.Contains(baselineNames, name) && !set.allowWeak:
			ds = append(ds, base.Errorf([]string{"disable_isolation", strconv.Itoa(i)}, "%s keeps the code from the host and the API: disabling it needs allow_weak_isolation = true as well", name))
			continue
		}
		set.disable[name] = true
	}
	if len(set.disable) > 0 {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityWarning, Summary: "isolation features are disabled: " + strings.Join(raw.DisableIsolation, ", "),
			Detail: "Sessions run without them; Health reports them as not enforced.",
			Path:   []string{"disable_isolation"},
		})
	}
	if set.allowWeak {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityWarning, Summary: "allow_weak_isolation is set",
			Detail: "Sessions open even where the code is not kept from the host and the API (" + strings.Join(baselineNames, ", ") + "); where they are missing, Health reports the runner degraded.",
			Path:   []string{"allow_weak_isolation"},
		})
	}
	for i, name := range raw.RequireIsolation {
		switch {
		case !slices.Contains(featureNames, name):
			ds = append(ds, base.Errorf([]string{"require_isolation", strconv.Itoa(i)}, "unknown isolation feature %q; known: %s", name, strings.Join(featureNames, ", ")))
		case set.disable[name]:
			ds = append(ds, base.Errorf([]string{"require_isolation", strconv.Itoa(i)}, "feature %q is both required and disabled", name))
		default:
			set.require = append(set.require, name)
		}
	}

	interp, venv := "", ""
	if raw.Interpreter != nil {
		interp = *raw.Interpreter
	}
	if raw.Venv != nil {
		venv = *raw.Venv
	}
	switch {
	case interp != "" && venv != "":
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: "interpreter and venv conflict",
			Detail: "Set venv to run <venv>/bin/python, or interpreter to run a given python, not both.",
			Path:   []string{"venv"},
		})
	default:
		path, roots, err := resolveInterpreter(interp, venv, req.DataDir)
		attr := "interpreter"
		if venv != "" {
			attr = "venv"
		}
		if err != nil {
			ds = append(ds, base.Errorf([]string{attr}, "%v", err))
			break
		}
		set.interpreter, set.roots = path, roots
		if os.Geteuid() == 0 && !set.disable[featUID] {
			// The code runs under a uid of its own, as an "other" user of these files.
			if err := othersCanRun(path); err != nil {
				ds = append(ds, base.Errorf([]string{attr}, "%v", err))
				break
			}
		}
		if validate {
			if err := checkInterpreter(path); err != nil {
				ds = append(ds, base.Errorf([]string{attr}, "%v", err))
			}
		}
	}
	return set, ds
}

// parseDurationAttr parses a duration attribute, appending a diagnostic on error.
func parseDurationAttr(ds *base.Diagnostics, name string, v *string, def string) time.Duration {
	s := def
	if v != nil {
		s = *v
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil:
		*ds = append(*ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", s),
			Detail: "Write a duration with a unit, such as \"30s\", \"500ms\" or \"2m\".",
			Path:   []string{name},
		})
	case d <= 0:
		*ds = append(*ds, base.Errorf([]string{name}, "%s must be positive, got %q", name, s))
	default:
		return d
	}
	return 0
}

// parseSizeAttr parses a size attribute, appending a diagnostic on error.
func parseSizeAttr(ds *base.Diagnostics, name string, v *flexString, def string) uint64 {
	s := def
	if v != nil {
		s = string(*v)
	}
	n, err := parseSize(s)
	if err != nil {
		*ds = append(*ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid size %q for %s", s, name),
			Detail: fmt.Sprintf("%s = %q %s. Write a number of bytes or a size with a unit, such as \"512MiB\", \"1GiB\" or \"100MB\".", name, s, err),
			Path:   []string{name},
		})
		return 0
	}
	return n
}

// parseSize parses a size of at least one byte (see bytesize.Parse). Its error completes
// "NAME = VALUE ...".
func parseSize(s string) (uint64, error) {
	n, err := bytesize.Parse(s)
	switch {
	case err != nil:
		return 0, err
	case n < 1:
		return 0, errors.New("must be at least 1 byte")
	}
	return uint64(n), nil
}

// resolveInterpreter finds the interpreter to run: <venv>/bin/python, the configured one,
// or the default. It returns an absolute path and the directories besides the system
// paths that the sandbox must be able to read for it to work.
func resolveInterpreter(interp, venv, dataDir string) (string, []string, error) {
	if venv != "" {
		if !filepath.IsAbs(venv) && dataDir != "" {
			venv = filepath.Join(dataDir, venv)
		}
		abs, err := filepath.Abs(venv)
		if err != nil {
			return "", nil, fmt.Errorf("venv %q: %w", venv, err)
		}
		if _, err := os.Stat(filepath.Join(abs, "pyvenv.cfg")); err != nil {
			return "", nil, fmt.Errorf("venv %s is not a virtual environment (no pyvenv.cfg): create it with `python3 -m venv %s`", abs, abs)
		}
		py := filepath.Join(abs, "bin", "python")
		// The venv's python is kept as is, not resolved: the interpreter finds its venv
		// through the path it was started as.
		if err := checkExecutable(py); err != nil {
			return "", nil, err
		}
		real, err := filepath.EvalSymlinks(py)
		if err != nil {
			return "", nil, fmt.Errorf("venv interpreter %s: %w", py, err)
		}
		return py, []string{abs, installPrefix(real)}, nil
	}
	var path string
	switch {
	case interp == "":
		if checkExecutable(systemPython) == nil {
			path = systemPython
		} else {
			p, err := exec.LookPath("python3")
			if err != nil {
				return "", nil, fmt.Errorf("no Python interpreter found: neither %s nor python3 on the plugin's PATH exists; install python3 or set interpreter", systemPython)
			}
			path = p
		}
	case strings.ContainsRune(interp, '/'):
		path = interp
	default:
		p, err := exec.LookPath(interp)
		if err != nil {
			return "", nil, fmt.Errorf("interpreter %q not found on the plugin's PATH; give an absolute path", interp)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, fmt.Errorf("interpreter %q: %w", path, err)
	}
	if err := checkExecutable(abs); err != nil {
		return "", nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", nil, fmt.Errorf("interpreter %s: %w", abs, err)
	}
	if isScript(real) {
		// A wrapper such as a pyenv shim: ask it once what it runs.
		out, err := exec.Command(real, "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			return "", nil, fmt.Errorf("interpreter %s is a script and did not tell its interpreter: %v", real, err)
		}
		inner := strings.TrimSpace(string(out))
		if inner == "" || !filepath.IsAbs(inner) {
			return "", nil, fmt.Errorf("interpreter %s is a script and reported no interpreter path", real)
		}
		if real, err = filepath.EvalSymlinks(inner); err != nil {
			return "", nil, fmt.Errorf("interpreter %s (run by %s): %w", inner, abs, err)
		}
	}
	return real, []string{installPrefix(real)}, nil
}

// installPrefix returns the installation prefix of an interpreter at <prefix>/bin/python.
func installPrefix(real string) string {
	dir := filepath.Dir(real)
	if filepath.Base(dir) == "bin" {
		return filepath.Dir(dir)
	}
	return dir
}

// checkExecutable reports whether path is an executable regular file.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("interpreter %s does not exist", path)
	case err != nil:
		return fmt.Errorf("interpreter %s: %w", path, err)
	case fi.IsDir():
		return fmt.Errorf("interpreter %s is a directory", path)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("interpreter %s is not executable", path)
	}
	return nil
}

// othersCanRun checks that a user other than the owner (the sandbox's uid) can run the
// interpreter at path: every directory on the way searchable, the file (and the one it
// links to) executable by others.
func othersCanRun(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	for _, p := range []string{path, real} {
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o001 == 0 {
				return fmt.Errorf("the sandbox's uid cannot run %s: directory %s is not searchable by other users (chmod o+x it, or install Python elsewhere)", path, d)
			}
			if d == "/" {
				break
			}
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o005 != 0o005 {
		return fmt.Errorf("the sandbox's uid cannot run %s: %s is not readable and executable by other users", path, real)
	}
	return nil
}

// isScript reports whether the file starts with "#!".
func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	n, _ := f.Read(b[:])
	return n == 2 && b[0] == '#' && b[1] == '!'
}

// checkInterpreter starts the interpreter once and checks it is a Python 3.
func checkInterpreter(path string) error {
	cmd := exec.Command(path, "-s", "-c", "import sys; print(sys.version_info[0])")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("interpreter %s does not run: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	if strings.TrimSpace(string(out)) != "3" {
		return fmt.Errorf("interpreter %s is not Python 3 (says %q)", path, strings.TrimSpace(string(out)))
	}
	return nil
}

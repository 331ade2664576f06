package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr string
	}{
		{"512MiB", 512 << 20, ""},
		{"512 MiB", 512 << 20, ""},
		{"1gib", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"100MB", 100e6, ""},
		{"10G", 10 << 30, ""},
		{"4096", 4096, ""},
		{"1kB", 1000, ""},
		{"0", 0, "must be at least 1 byte"},
		{"0.5", 0, "must be at least 1 byte"},
		{"", 0, "is not a size"},
		{"MiB", 0, "is not a size"},
		{"12 parsecs", 0, `has an unknown unit "parsecs"`},
		{"-5MiB", 0, "must not be negative"},
		{"99999999TiB", 0, "is too large"},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	set, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{}`)}, false)
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	want := runner.Limits{
		Timeout: 30 * time.Second, MemoryBytes: 512 << 20, CPUMillis: 1000, MaxProcesses: 64,
		MaxOutputBytes: 1 << 20, MaxFileBytes: 1 << 30, MaxDiskBytes: 1 << 30,
	}
	if set.limits != want {
		t.Errorf("limits = %+v, want %+v", set.limits, want)
	}
	if set.interruptGrace != 2*time.Second {
		t.Errorf("interrupt_grace = %s", set.interruptGrace)
	}
	if real, _ := filepath.EvalSymlinks(systemPython); set.interpreter != real {
		t.Errorf("interpreter = %q, want %s resolved (%s)", set.interpreter, systemPython, real)
	}
	if !filepath.IsAbs(set.interpreter) {
		t.Errorf("interpreter %q is not absolute", set.interpreter)
	}
}

func TestParseConfigValues(t *testing.T) {
	cfg := `{"timeout": "1m", "memory_limit": 268435456, "cpu_limit": 0.5, "max_processes": 10,
		"max_output_bytes": "64KiB", "max_file_bytes": "10MB", "max_disk_bytes": "64MiB", "interrupt_grace": "250ms",
		"env": {"A": "1"}, "disable_isolation": ["net_ns"], "require_isolation": ["seccomp"], "allow_weak_isolation": true}`
	set, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(cfg)}, false)
	if ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	want := runner.Limits{
		Timeout: time.Minute, MemoryBytes: 256 << 20, CPUMillis: 500, MaxProcesses: 10,
		MaxOutputBytes: 64 << 10, MaxFileBytes: 10e6, MaxDiskBytes: 64 << 20,
	}
	if set.limits != want || set.interruptGrace != 250*time.Millisecond || set.env["A"] != "1" ||
		!set.disable["net_ns"] || len(set.require) != 1 || !set.allowWeak {
		t.Errorf("settings = %+v", set)
	}
	// Disabling a feature and weak isolation are allowed but warned about.
	if len(ds) != 2 || ds[0].Severity != base.SeverityWarning || ds[0].Path[0] != "disable_isolation" ||
		ds[1].Severity != base.SeverityWarning || ds[1].Path[0] != "allow_weak_isolation" {
		t.Errorf("diagnostics = %+v, want warnings on disable_isolation and allow_weak_isolation", ds)
	}
}

// TestParseConfigDiskOff: max_disk_bytes 0, as a number or a string, turns the disk
// limit off rather than being refused as a size.
func TestParseConfigDiskOff(t *testing.T) {
	for _, cfg := range []string{`{"max_disk_bytes": 0}`, `{"max_disk_bytes": "0"}`} {
		set, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(cfg)}, false)
		if ds.HasErrors() || set.limits.MaxDiskBytes != 0 {
			t.Errorf("%s: %d %v", cfg, set.limits.MaxDiskBytes, ds.Err())
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "python")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  string
		path string
		msg  string
	}{
		{"unknown attribute", `{"memory": "1G"}`, "memory", "unsupported attribute"},
		{"wrong type", `{"cpu_limit": "lots"}`, "cpu_limit", "must be of type"},
		{"bad size", `{"memory_limit": "lots"}`, "memory_limit", "invalid size"},
		{"memory too small", `{"memory_limit": "1MiB"}`, "memory_limit", "at least 64MiB"},
		{"zero size", `{"max_output_bytes": 0}`, "max_output_bytes", "at least 1 byte"},
		{"disk too small", `{"max_disk_bytes": "1MiB"}`, "max_disk_bytes", "at least 8MiB (or 0 for no limit)"},
		{"bad disk size", `{"max_disk_bytes": "-1"}`, "max_disk_bytes", `invalid size "-1" for max_disk_bytes: max_disk_bytes = "-1" must not be negative`},
		{"bad unit", `{"memory_limit": "5 bananas"}`, "memory_limit", `memory_limit = "5 bananas" has an unknown unit "bananas". Write a number of bytes`},
		{"bad duration", `{"timeout": "30"}`, "timeout", "invalid duration"},
		{"negative duration", `{"interrupt_grace": "-1s"}`, "interrupt_grace", "must be positive"},
		{"cpu zero", `{"cpu_limit": 0}`, "cpu_limit", "above 0"},
		{"procs fraction", `{"max_processes": 2.5}`, "max_processes", "whole number"},
		{"procs zero", `{"max_processes": 0}`, "max_processes", "whole number"},
		{"env name", `{"env": {"A=B": "x"}}`, "env", "invalid environment variable"},
		{"both interpreters", `{"interpreter": "/usr/bin/python3", "venv": "/opt/v"}`, "venv", "conflict"},
		{"missing interpreter", `{"interpreter": "/nonexistent/python3"}`, "interpreter", "does not exist"},
		{"not executable", `{"interpreter": "` + notExec + `"}`, "interpreter", "not executable"},
		{"not on PATH", `{"interpreter": "python-does-not-exist"}`, "interpreter", "not found"},
		{"not a venv", `{"venv": "` + dir + `"}`, "venv", "not a virtual environment"},
		{"unknown feature", `{"disable_isolation": ["magic"]}`, "disable_isolation", "unknown isolation feature"},
		{"required and disabled", `{"disable_isolation": ["uid"], "require_isolation": ["uid"], "allow_weak_isolation": true}`, "require_isolation", "both required and disabled"},
		{"baseline disabled", `{"disable_isolation": ["ipc_ns", "net_ns"]}`, "disable_isolation", "net_ns keeps the code from the host and the API: disabling it needs allow_weak_isolation = true"},
		{"weak not a bool", `{"allow_weak_isolation": "yes"}`, "allow_weak_isolation", "must be of type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(tt.cfg)}, false)
			if !ds.HasErrors() {
				t.Fatalf("no error for %s", tt.cfg)
			}
			var found bool
			for _, d := range ds {
				if d.Severity == base.SeverityError && len(d.Path) > 0 && d.Path[0] == tt.path &&
					strings.Contains(d.Error(), tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("diagnostics %v: want an error at %q mentioning %q", ds, tt.path, tt.msg)
			}
		})
	}
}

// TestInterpreterReachableBySandbox checks that an interpreter the sandbox's uid could not
// run is refused with the reason, when the plugin runs as root.
func TestInterpreterReachableBySandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only a root plugin runs the code under a uid of its own")
	}
	dir := t.TempDir() // mode 0700
	link := filepath.Join(dir, "python3")
	if err := os.Symlink(systemPython, link); err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(dir, "venv")
	if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(venv, "pyvenv.cfg"), []byte("home = /usr/bin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(systemPython, filepath.Join(venv, "bin", "python")); err != nil {
		t.Fatal(err)
	}
	_, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"venv": "` + venv + `"}`)}, false)
	if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "not searchable by other users") {
		t.Errorf("venv in a 0700 directory: %v", ds)
	}
	// The interpreter itself is resolved to its real path, which others can run.
	if _, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"interpreter": "` + link + `"}`)}, false); ds.HasErrors() {
		t.Errorf("interpreter linked from a 0700 directory: %v", ds)
	}
	// With uid isolation off the plugin's own uid runs it: no such check.
	if _, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"venv": "` + venv + `", "disable_isolation": ["uid"], "allow_weak_isolation": true}`)}, false); ds.HasErrors() {
		t.Errorf("uid disabled: %v", ds)
	}
}

// TestParseConfigCollectsAll checks that every problem is reported at once.
func TestParseConfigCollectsAll(t *testing.T) {
	_, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"timeout": "x", "memory_limit": "y", "cpu_limit": -1}`)}, false)
	if n := len(ds); n != 3 {
		t.Errorf("got %d diagnostics, want 3: %v", n, ds)
	}
}

// TestValidateRunsInterpreter checks that validation starts the interpreter: a script that
// is not Python is refused before any session.
func TestValidateRunsInterpreter(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A shell script is taken for a wrapper and asked for its interpreter: it answers "2",
	// which is no path.
	_, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{"interpreter": "` + fake + `"}`)}, true)
	if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "reported no interpreter path") {
		t.Errorf("diagnostics = %v", ds)
	}
	if _, ds := parseConfig(base.ConfigureRequest{Config: json.RawMessage(`{}`)}, true); ds.HasErrors() {
		t.Errorf("the system python does not validate: %v", ds.Err())
	}
}

func TestSchemaDefaultsParse(t *testing.T) {
	// Every default the schema publishes must be accepted as the value of its attribute.
	obj := map[string]any{}
	for _, a := range configSchema().Attributes {
		if a.Description == "" {
			t.Errorf("attribute %s has no description", a.Name)
		}
		if a.Default != nil {
			obj[a.Name] = a.Default
		}
	}
	b, _ := json.Marshal(obj)
	if _, ds := parseConfig(base.ConfigureRequest{Config: b}, false); ds.HasErrors() {
		t.Errorf("schema defaults %s: %v", b, ds.Err())
	}
}

func TestEffectiveLimits(t *testing.T) {
	def := runner.Limits{Timeout: time.Second, MemoryBytes: 1, CPUMillis: 2, MaxProcesses: 3, MaxOutputBytes: 4, MaxFileBytes: 5}
	if got := effectiveLimits(def, runner.Limits{}); got != def {
		t.Errorf("zero session limits changed the defaults: %+v", got)
	}
	sess := runner.Limits{Timeout: time.Minute, MemoryBytes: 10, CPUMillis: 20, MaxProcesses: 30, MaxOutputBytes: 40, MaxFileBytes: 50}
	if got := effectiveLimits(def, sess); got != sess {
		t.Errorf("session limits did not override: %+v", got)
	}
}

func TestFrames(t *testing.T) {
	b := encodeFrame(frameDone, field{keyID, []byte("e1")}, field{keyStatus, []byte("ok")}, field{keyCPU, []byte("1234")}, field{keyValue, nil})
	f, err := readFrame(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.typ != frameDone || f.str(keyID) != "e1" || f.str(keyStatus) != "ok" || f.int(keyCPU) != 1234 || f.str(keyValue) != "" {
		t.Errorf("decoded %+v", f)
	}
	// splitFrame takes frames off a stream that arrives in pieces.
	stream := append(append([]byte{}, b...), b...)
	var got int
	var buf []byte
	for _, c := range stream {
		buf = append(buf, c)
		for {
			_, rest, ok, err := splitFrame(buf)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			buf = rest
			got++
		}
	}
	if got != 2 || len(buf) != 0 {
		t.Errorf("split %d frames, %d bytes left", got, len(buf))
	}
}

func TestFramesCorrupt(t *testing.T) {
	tests := map[string][]byte{
		"huge length":     {0x7f, 0, 0, 0, 'D'},
		"zero length":     {0, 0, 0, 0},
		"field overflows": {0, 0, 0, 7, 'D', 'i', 0, 0, 0, 9, 'x'},
		"short field":     {0, 0, 0, 3, 'D', 'i', 0},
	}
	for name, b := range tests {
		if _, _, ok, err := splitFrame(b); err == nil || ok {
			t.Errorf("%s: splitFrame ok=%v err=%v, want an error", name, ok, err)
		}
		if _, err := readFrame(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: readFrame accepted it", name)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[uint64]string{512 << 20: "512 MiB", 1 << 30: "1 GiB", 3 << 29: "1.5 GiB", 100: "100 B"} {
		if got := formatBytes(in); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestOutputCap(t *testing.T) {
	var got []string
	o := outputCap{max: 10, emit: func(ev runner.Event) error {
		got = append(got, string(ev.Output.Data))
		return nil
	}}
	for _, s := range []string{"12345", "6789abcdef", "more"} {
		if err := o.add(runner.Stdout, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// stderr's reserve (a quarter) is not stdout's.
	if !o.truncated || len(got) != 3 || got[0] != "12345" || got[1] != "678" || !strings.Contains(got[2], "stdout truncated") {
		t.Errorf("got %q truncated=%v", got, o.truncated)
	}
	got = nil
	for _, s := range []string{"ab", "cdef"} {
		if err := o.add(runner.Stderr, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "ab" || !strings.Contains(got[1], "stderr truncated") {
		t.Errorf("stderr after stdout was cut: %q", got)
	}
}

func TestOutputCapReserve(t *testing.T) {
	// Budget 100: each stream is guaranteed 25 bytes; the rest is first come, first served.
	tests := []struct {
		name   string
		writes []string // "o:n" or "e:n": n bytes to stdout or stderr
		out    uint64
		errs   uint64
		cut    [2]bool
	}{
		{"stdout alone", []string{"o:200"}, 75, 0, [2]bool{true, false}},
		{"stderr alone", []string{"e:200"}, 0, 75, [2]bool{false, true}},
		{"stderr after a stdout flood", []string{"o:200", "e:200"}, 75, 25, [2]bool{true, true}},
		{"stdout after a stderr flood", []string{"e:200", "o:10", "o:30"}, 25, 75, [2]bool{true, true}},
		{"both within", []string{"o:50", "e:40", "o:10"}, 60, 40, [2]bool{}},
		{"stderr past its reserve first", []string{"e:60", "o:60"}, 40, 60, [2]bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n [2]uint64
			markers := 0
			o := outputCap{max: 100, emit: func(ev runner.Event) error {
				i := 0
				if ev.Output.Stream == runner.Stderr {
					i = 1
				}
				if strings.Contains(string(ev.Output.Data), "truncated: max_output_bytes") {
					markers++
				} else {
					n[i] += uint64(len(ev.Output.Data))
				}
				return nil
			}}
			for _, w := range tt.writes {
				size, _ := strconv.Atoi(w[2:])
				s := runner.Stdout
				if w[0] == 'e' {
					s = runner.Stderr
				}
				if err := o.add(s, bytes.Repeat([]byte("z"), size)); err != nil {
					t.Fatal(err)
				}
			}
			wantMarkers := 0
			for _, c := range tt.cut {
				if c {
					wantMarkers++
				}
			}
			if n[0] != tt.out || n[1] != tt.errs || o.cut != tt.cut || markers != wantMarkers || o.truncated != (wantMarkers > 0) {
				t.Errorf("stdout %d stderr %d cut %v markers %d truncated %v", n[0], n[1], o.cut, markers, o.truncated)
			}
		})
	}
}

func TestCapError(t *testing.T) {
	long := "Traceback\n" + strings.Repeat("é", 1000) + "\nValueError: end\n"
	got, cut := capError(long, 101)
	if !cut || !strings.HasPrefix(got, "Traceback\n") || !strings.HasSuffix(got, "ValueError: end\n") || !utf8.ValidString(got) ||
		len(got) > 101+len(errorCutMarker)+20 || !strings.Contains(got, "[error truncated: max_output_bytes of 101 bytes reached;") {
		t.Errorf("capError = %q, %v", got, cut)
	}
	if got, cut := capError("short", 5); got != "short" || cut {
		t.Errorf("capError(short) = %q, %v", got, cut)
	}
}

func TestUnsearchableAncestor(t *testing.T) {
	root, err := os.MkdirTemp("", "limit-python-ancestor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(root, "a", "private")
	work := filepath.Join(priv, "b", "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := unsearchableAncestor(work); got != "" {
		t.Errorf("all searchable, got %q", got)
	}
	if err := os.Chmod(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := unsearchableAncestor(work); got != priv {
		t.Errorf("unsearchableAncestor = %q, want %s", got, priv)
	}
}

// TestCFSQuota: a session's cpu_millis becomes a CFS quota within what the kernel takes:
// at least 1 ms per period, at most every CPU (an operator may ask for 2^64-1 millis, which
// multiplied by the period overflowed int64 into a negative quota).
func TestCFSQuota(t *testing.T) {
	all := int64(runtime.NumCPU()) * period
	for _, c := range []struct {
		millis uint64
		want   int64
	}{
		{1, 1000},
		{500, min(50000, all)},
		{uint64(runtime.NumCPU()) * 1000, all},
		{1 << 62, all},
		{math.MaxUint64, all},
	} {
		if got := cfsQuota(c.millis); got != c.want {
			t.Errorf("cfsQuota(%d) = %d, want %d", c.millis, got, c.want)
		}
	}
}

package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/internal/gguf"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func TestUTF8Stream(t *testing.T) {
	for _, tt := range []struct {
		name   string
		pieces []string
		want   []string // text returned after each piece
		flush  string
	}{
		{"ascii", []string{"ab", "c"}, []string{"ab", "c"}, ""},
		{"split character", []string{"\xc3", "\xa9t\xc3", "\xa9"}, []string{"", "ét", "é"}, ""},
		{"three bytes one by one", []string{"\xe2", "\x82", "\xac!"}, []string{"", "", "€!"}, ""},
		{"invalid byte", []string{"a\xffb"}, []string{"a\uFFFDb"}, ""},
		{"lone continuation", []string{"\x80x"}, []string{"\uFFFDx"}, ""},
		{"broken sequence", []string{"\xc3", "x"}, []string{"", "\uFFFDx"}, ""},
		{"unfinished at end", []string{"ok\xe2\x82"}, []string{"ok"}, "\uFFFD"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s utf8Stream
			for i, p := range tt.pieces {
				got := s.write([]byte(p))
				if got != tt.want[i] || !utf8.ValidString(got) {
					t.Errorf("piece %d %q: got %q, want %q", i, p, got, tt.want[i])
				}
			}
			if got := s.flush(); got != tt.flush {
				t.Errorf("flush: got %q, want %q", got, tt.flush)
			}
		})
	}
}

func TestStopHelpers(t *testing.T) {
	for _, tt := range []struct {
		text  string
		from  int
		stops []string
		cut   int
		found bool
		hold  int
	}{
		{"hello world", 0, []string{"wor"}, 6, true, 0},
		{"hello wo", 0, []string{"wor"}, -1, false, 2},
		{"hello w", 0, []string{"wor", "w"}, 6, true, 2},
		{"abc", 0, nil, -1, false, 0},
		{"abcabc", 4, []string{"abc"}, 3, true, 0},
		{"xyz", 0, []string{"", "q"}, -1, false, 0},
	} {
		cut, found := findStop(tt.text, tt.from, tt.stops)
		if found != tt.found || (found && cut != tt.cut) {
			t.Errorf("findStop(%q, %d, %q) = %d, %v; want %d, %v", tt.text, tt.from, tt.stops, cut, found, tt.cut, tt.found)
		}
		if !found {
			if got := stopPrefixLen(tt.text, tt.stops); got != tt.hold {
				t.Errorf("stopPrefixLen(%q, %q) = %d, want %d", tt.text, tt.stops, got, tt.hold)
			}
		}
	}
	if got := clip.Prefix("aé", 2); got != "a" {
		t.Errorf("truncateUTF8 split a character: %q", got)
	}
}

func TestParseParams(t *testing.T) {
	def := sample(-1, 10)
	ep, err := parseParams(map[string]any{
		"max_tokens": 5.0, "temperature": 0.0, "top_p": 0.5, "top_k": 3.0, "seed": 9.0,
		"stop": []any{"a", "", "b"}, "ignore_eos": true,
		"messages": []any{map[string]any{"role": "user", "content": "hi"}},
	}, def)
	if err != nil {
		t.Fatal(err)
	}
	want := sampling{Temperature: 0, TopP: 0.5, TopK: 3, Seed: 9, MaxTokens: 5}
	if ep.sampling != want || !slices.Equal(ep.stop, []string{"a", "b"}) || !ep.ignoreEOS ||
		len(ep.messages) != 1 || ep.messages[0] != (chatMessage{"user", "hi"}) {
		t.Errorf("parsed %+v", ep)
	}
	if ep, err := parseParams(nil, def); err != nil || ep.sampling != def {
		t.Errorf("no params: %+v %v", ep, err)
	}
	// Bounds and values are written as whole numbers, not in exponent notation.
	for _, tt := range []struct {
		p    map[string]any
		want string
	}{
		{map[string]any{"max_tokens": 1048577.0}, "params.max_tokens must be a whole number from 1 to 1048576, got 1048577"},
		{map[string]any{"seed": 5e9}, "params.seed must be a whole number from -1 to 4294967294, got 5000000000"},
		{map[string]any{"top_k": 2.5}, "params.top_k must be a whole number from 0 to 1048576, got 2.5"},
		{map[string]any{"top_k": "3"}, `params.top_k must be a whole number from 0 to 1048576, got the string "3"`},
		{map[string]any{"max_tokens": "10"}, `params.max_tokens must be a whole number from 1 to 1048576, got the string "10"`},
		{map[string]any{"temperature": "hot"}, `params.temperature must be a number from 0 to 10, got the string "hot"`},
		{map[string]any{"top_p": 2e22}, "params.top_p must be a number above 0 and at most 1, got 2e+22"},
		{map[string]any{"ignore_eos": "yes"}, `params.ignore_eos must be true or false, got the string "yes"`},
		{map[string]any{"stop": []any{1.0}}, "params.stop[0] must be a string, got 1"},
		{map[string]any{"stop": map[string]any{}}, "params.stop must be a string or a list of strings, got an object"},
	} {
		if _, err := parseParams(tt.p, def); err == nil || err.Error() != tt.want {
			t.Errorf("params %v: error %v, want %q", tt.p, err, tt.want)
		}
	}
	for _, bad := range []map[string]any{
		{"max_tokens": 0.0}, {"top_p": 0.0}, {"top_k": -1.0}, {"seed": -2.0}, {"temperature": 11.0},
		{"messages": []any{}}, {"messages": []any{"hi"}}, {"messages": []any{map[string]any{"role": "u", "content": "c", "name": "x"}}},
		{"stop": []any{1.0}}, {"ignore_eos": "yes"}, {"frequency_penalty": 1.0},
	} {
		if _, err := parseParams(bad, def); err == nil {
			t.Errorf("params %v accepted", bad)
		}
	}
}

// TestParseConfig checks the configuration's diagnostics in-process; none of these
// touch llama.cpp.
func TestParseConfig(t *testing.T) {
	lib := testLibDir(t)
	model := tiny(t)
	nb := gguf.DefaultTinyLlama()
	nb.NoByteTokens = true
	noBytes := testModel(t, nb)
	emptyLib := t.TempDir()
	noenv := func(string) string { return "" }
	for _, tt := range []struct {
		name  string
		cfg   map[string]any
		paths [][]string // error paths, in order
		warn  string
	}{
		{"ok", map[string]any{"model": model, "library_dir": lib}, nil, ""},
		{"no model", map[string]any{"library_dir": lib}, [][]string{{"model"}}, ""},
		{"bad numbers", map[string]any{"model": model, "library_dir": lib, "context_size": 1.5, "threads": -1, "batch_size": 0,
			"top_k": -3, "max_tokens": 0, "seed": -7, "temperature": -1, "top_p": 2},
			[][]string{{"context_size"}, {"threads"}, {"batch_size"}, {"top_k"}, {"max_tokens"}, {"seed"}, {"temperature"}, {"top_p"}}, ""},
		{"library lacks files", map[string]any{"model": model, "library_dir": emptyLib}, [][]string{{"library_dir"}}, ""},
		{"unknown attribute", map[string]any{"model": model, "gpu_layers": 3}, [][]string{{"gpu_layers"}}, ""},
		{"timeout without a unit", map[string]any{"model": model, "library_dir": lib, "timeout": "60"}, [][]string{{"timeout"}}, ""},
		{"timeout not positive", map[string]any{"model": model, "library_dir": lib, "timeout": "0s"}, [][]string{{"timeout"}}, ""},
		{"no byte tokens", map[string]any{"model": noBytes, "library_dir": lib}, nil, "without the 256 byte tokens"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := json.Marshal(tt.cfg)
			_, _, ds := parseConfig(base.ConfigureRequest{Config: raw}, "", noenv)
			var paths [][]string
			var warns []string
			for _, d := range ds {
				if d.Severity == base.SeverityError {
					paths = append(paths, d.Path)
				} else {
					warns = append(warns, d.Summary)
				}
			}
			if !slices.EqualFunc(paths, tt.paths, slices.Equal) {
				t.Errorf("error paths %v, want %v (%v)", paths, tt.paths, ds)
			}
			if tt.warn != "" && (len(warns) != 1 || !strings.Contains(warns[0], tt.warn)) {
				t.Errorf("warnings %v, want one about %q", warns, tt.warn)
			}
		})
	}

	// The config's bounds are written as whole numbers too.
	raw, _ := json.Marshal(map[string]any{"model": model, "library_dir": lib, "context_size": 1 << 21})
	if _, _, ds := parseConfig(base.ConfigureRequest{Config: raw}, "", noenv); len(ds) != 1 ||
		ds[0].Summary != "context_size must be a whole number from 16 to 1048576, got 2097152" {
		t.Errorf("context_size too large: %v", ds)
	}

	// A context_size past the model's trained context is refused, naming both; unset,
	// the default is no more than the trained context.
	short := gguf.DefaultTinyLlama()
	short.ContextLength = 1024
	shortModel := testModel(t, short)
	raw, _ = json.Marshal(map[string]any{"model": shortModel, "library_dir": lib, "context_size": 2048})
	if _, _, ds := parseConfig(base.ConfigureRequest{Config: raw}, "", noenv); len(ds) != 1 || !slices.Equal(ds[0].Path, []string{"context_size"}) ||
		ds[0].Summary != "context_size 2048 is more than model "+shortModel+" was trained for (llama.context_length 1024)" ||
		!strings.Contains(ds[0].Detail, "set context_size to 1024 or less") {
		t.Errorf("context_size past the trained context: %v", ds)
	}
	for _, tt := range []struct {
		cfg  map[string]any
		want int
	}{
		{map[string]any{"model": shortModel, "library_dir": lib}, 1024},
		{map[string]any{"model": shortModel, "library_dir": lib, "context_size": 1024}, 1024},
		{map[string]any{"model": model, "library_dir": lib}, defaultContextSize},
	} {
		raw, _ = json.Marshal(tt.cfg)
		if set, _, ds := parseConfig(base.ConfigureRequest{Config: raw}, "", noenv); len(ds) != 0 || set.contextSize != tt.want {
			t.Errorf("config %v: context size %d (%v), want %d", tt.cfg, set.contextSize, ds, tt.want)
		}
	}

	// The hint about `make testmodel` is given for the path configs/models.hcl names
	// (relative to the data directory), not for any file that happens to share its name.
	for _, tt := range []struct {
		model string
		hint  bool
	}{
		{"../build/testdata/tiny-llama.gguf", true},
		{"tiny-llama.gguf", false},
		{"/nowhere/build/testdata/tiny-llama.gguf", false},
	} {
		raw, _ = json.Marshal(map[string]any{"model": tt.model, "library_dir": lib})
		_, _, ds := parseConfig(base.ConfigureRequest{Config: raw, DataDir: filepath.Join(t.TempDir(), "data")}, "", noenv)
		if len(ds) != 1 || !strings.Contains(ds[0].Summary, "does not exist") || strings.Contains(ds[0].Summary, "make testmodel") != tt.hint {
			t.Errorf("model %q: %v, want the hint %v", tt.model, ds, tt.hint)
		}
	}

	// A relative model path is relative to the data directory.
	dataDir := filepath.Dir(model)
	raw, _ = json.Marshal(map[string]any{"model": filepath.Base(model), "library_dir": lib})
	set, info, ds := parseConfig(base.ConfigureRequest{Config: raw, DataDir: dataDir}, "", noenv)
	if ds.HasErrors() || set.model != model || info.Name != "tiny-llama" || !info.ByteTokens || info.ChatTemplate != gguf.ChatMLTemplate {
		t.Errorf("relative model: %+v %+v %v", set, info, ds)
	}
	if set.threads != runtime.NumCPU() || set.contextSize != defaultContextSize || set.sampling != sample(-1, defaultMaxTokens) || set.timeout != time.Minute {
		t.Errorf("defaults: %+v", set)
	}
}

// TestLibraryFilesChecked checks that files named like the llama.cpp libraries but not
// ELF shared objects are refused at validation, naming the file, rather than when the
// first session loads them.
func TestLibraryFilesChecked(t *testing.T) {
	lib := testLibDir(t)
	model := tiny(t)
	noenv := func(string) string { return "" }
	real, err := os.ReadFile(filepath.Join(lib, "libllama.so"))
	if err != nil {
		t.Fatal(err)
	}
	exe := slices.Clone(real)
	exe[16], exe[17] = 2, 0 // e_type ET_EXEC, little-endian: an executable
	for _, tt := range []struct {
		name   string
		ggml   []byte
		expect string
	}{
		{"text", []byte("not a library\n"), `libggml.so is not an ELF shared object (it starts with "not ", not "\x7fELF")`},
		{"empty", nil, `libggml.so is not an ELF shared object (it starts with "", not "\x7fELF")`},
		{"executable", exe, "libggml.so is an ELF file but not a shared object"},
		{"cut", real[:64], "libggml.so is a damaged ELF file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range requiredLibs {
				b := real
				if name == "libggml.so" {
					b = tt.ggml
				}
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, _ := json.Marshal(map[string]any{"model": model, "library_dir": dir})
			_, _, ds := parseConfig(base.ConfigureRequest{Config: raw, ValidateOnly: true}, "", noenv)
			if len(ds) != 1 || !slices.Equal(ds[0].Path, []string{"library_dir"}) || !strings.Contains(ds[0].Summary, filepath.Join(dir, "libggml.so")) ||
				!strings.Contains(ds[0].Summary, tt.expect) {
				t.Errorf("diagnostics %v, want one at library_dir saying %q", ds, tt.expect)
			}
		})
	}
}

// TestLibDirSearch checks the library search order: the environment, lib/llama beside the
// plugin directory, then the repository's .cache.
func TestLibDirSearch(t *testing.T) {
	lib := testLibDir(t)
	root := t.TempDir()
	exe := filepath.Join(root, "bin", "plugins", "limit-runner-llama")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	if _, err := findLibDir(exe, getenv); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "bin", "lib", "llama")) ||
		!strings.Contains(err.Error(), filepath.Join(root, repoLibDir)) {
		t.Errorf("nothing installed: %v", err)
	}
	// The repository layout: bin/plugins/../../.cache/llama/...
	repo := filepath.Join(root, repoLibDir)
	if err := os.MkdirAll(filepath.Dir(repo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(lib, repo); err != nil {
		t.Fatal(err)
	}
	if got, err := findLibDir(exe, getenv); err != nil || got != repo {
		t.Errorf("repository layout: %q %v", got, err)
	}
	// The environment comes first.
	env[LibDirEnv] = lib
	if got, err := findLibDir(exe, getenv); err != nil || got != lib {
		t.Errorf("from %s: %q %v", LibDirEnv, got, err)
	}
}

// TestHCLConfig decodes a runner block written in HCL against the plugin's schema, as
// the host does, and checks that the plugin accepts the result with the defaults.
func TestHCLConfig(t *testing.T) {
	src := []byte(`
storage "bolt" {}
runner "llama" {
  plugin = "limit-runner-llama"
  env    = { LIMIT_LLAMA_LIB_DIR = "/nowhere" }
  config {
    model       = "` + tiny(t) + `"
    library_dir = "` + testLibDir(t) + `"
    temperature = 0
  }
}
`)
	cfg, diags := config.Parse("test.hcl", src, nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	raw, diags := config.DecodePluginConfig(cfg.Runners[0], configSchema())
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	set, _, ds := parseConfig(base.ConfigureRequest{Config: raw}, "", func(string) string { return "" })
	if len(ds) != 0 {
		t.Fatalf("plugin refused the decoded config %s: %v", raw, ds)
	}
	want := sample(defaultSeed, defaultMaxTokens)
	want.Temperature = 0
	if set.sampling != want || set.contextSize != defaultContextSize || set.batchSize != defaultBatchSize || set.model != tiny(t) {
		t.Errorf("settings: %+v", set)
	}
	if cfg.Runners[0].Env[LibDirEnv] != "/nowhere" {
		t.Errorf("env: %v", cfg.Runners[0].Env)
	}
}

// TestTokenSender checks that coalescing keeps every token in order, sends the first at
// once, and reports a failed send to the generator.
func TestTokenSender(t *testing.T) {
	var mu sync.Mutex
	var got []int64
	firstSent := make(chan struct{})
	s := newTokenSender(func(ev runner.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ev.Token.ID)
		if len(got) == 1 {
			close(firstSent)
		}
		return nil
	})
	if err := s.send("a", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-firstSent:
	case <-time.After(10 * time.Second):
		t.Fatal("the first token was not sent before the next one came")
	}
	for i := 1; i < 5000; i++ {
		if err := s.send("x", llama.Token(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5000 {
		t.Fatalf("%d tokens sent, want 5000", len(got))
	}
	for i, id := range got {
		if id != int64(i) {
			t.Fatalf("token %d sent as %d-th", id, i)
		}
	}

	boom := errors.New("stream gone")
	f := newTokenSender(func(runner.Event) error { return boom })
	_ = f.send("a", 1)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		err = f.send("b", 2)
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, boom) || !errors.Is(f.close(), boom) {
		t.Errorf("send after a failed emit: %v", err)
	}
}

// TestInterruptedUsage checks that a cancelled or timed-out execution reports the CPU
// time it used, like one that ends by itself.
func TestInterruptedUsage(t *testing.T) {
	r := newRunner(nil)
	cpu0 := cpuTime()
	for spin := time.Now(); time.Since(spin) < 50*time.Millisecond || cpuTime()-cpu0 < 20*time.Millisecond; {
	}
	for _, cause := range []error{errTimeout, errCancelled} {
		res, _ := r.interrupted(cause, genResult{completion: 3}, 2, time.Now(), time.Second, cpu0)
		if res.Usage.CPUTimeMS < 20 || res.Usage.CompletionTokens != 3 || res.Usage.PromptTokens != 2 {
			t.Errorf("%v: usage %+v, want the CPU time used since the execution began (20 ms or more)", cause, res.Usage)
		}
	}
}

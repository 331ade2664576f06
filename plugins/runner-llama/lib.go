package main

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
	"github.com/hashicorp/go-hclog"
	"github.com/hybridgroup/yzma/pkg/llama"
	"golang.org/x/sys/unix"
)

// library is the process's one binding of llama.cpp: the shared libraries can be loaded
// once, from one directory.
var library struct {
	mu     sync.Mutex
	dir    string
	loaded bool
	logs   *logSink
}

// loadLibrary loads the llama.cpp libraries from dir and initialises the backend, once
// per process. Loading again from the same directory is a no-op; from another, an error.
func loadLibrary(dir string, logger hclog.Logger) error {
	library.mu.Lock()
	defer library.mu.Unlock()
	if library.loaded {
		if dir != library.dir {
			return fmt.Errorf("llama.cpp is already loaded from %s in this process; a new library_dir (%s) needs a new plugin process", library.dir, dir)
		}
		return nil
	}
	// On a fatal error ggml prints a backtrace by attaching gdb to the process, which
	// is slow and needs ptrace; the error message is what the host needs.
	if _, ok := os.LookupEnv("GGML_NO_BACKTRACE"); !ok {
		os.Setenv("GGML_NO_BACKTRACE", "1")
	}
	if err := llama.Load(dir); err != nil {
		return fmt.Errorf("load llama.cpp from %s: %w", dir, err)
	}
	library.logs = newLogSink(logger)
	llama.LogSet(library.logs.callback)
	llama.Init()
	if n := llama.GGMLBackendDeviceCount(); n == 0 {
		return fmt.Errorf("llama.cpp from %s found no compute backend: the libggml-cpu-*.so files are missing or none suits this CPU", dir)
	}
	library.dir, library.loaded = dir, true
	return nil
}

// logSink receives llama.cpp's log lines, forwards them to the plugin's logger and keeps
// the last warnings and errors, so a failure can say what llama.cpp complained about.
type logSink struct {
	logger   hclog.Logger
	callback uintptr

	mu      sync.Mutex
	partial strings.Builder
	level   int32
	recent  []string // last warnings and errors, oldest first
	serial  int      // lines added to recent so far
}

// maxRecent bounds the warnings and errors kept.
const maxRecent = 16

func newLogSink(logger hclog.Logger) *logSink {
	s := &logSink{logger: logger}
	s.callback = purego.NewCallback(func(level int32, text *byte, _ uintptr) uintptr {
		s.write(level, unix.BytePtrToString(text))
		return 0
	})
	return s
}

// write takes one piece of a log line; llama.cpp sends lines in pieces, the later ones
// with level LogLevelContinue.
func (s *logSink) write(level int32, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if llama.LogLevel(level) != llama.LogLevelContinue {
		s.level = level
	}
	s.partial.WriteString(text)
	for {
		buf := s.partial.String()
		i := strings.IndexByte(buf, '\n')
		if i < 0 {
			return
		}
		line := strings.TrimRight(buf[:i], "\r")
		s.partial.Reset()
		s.partial.WriteString(buf[i+1:])
		if line != "" {
			s.emit(llama.LogLevel(s.level), line)
		}
	}
}

func (s *logSink) emit(level llama.LogLevel, line string) {
	switch level {
	case llama.LogLevelError:
		s.logger.Error("llama.cpp: " + line)
	case llama.LogLevelWarn:
		s.logger.Warn("llama.cpp: " + line)
	case llama.LogLevelInfo:
		s.logger.Debug("llama.cpp: " + line)
	default:
		s.logger.Trace("llama.cpp: " + line)
		return
	}
	if level == llama.LogLevelError || level == llama.LogLevelWarn {
		s.recent = append(s.recent, line)
		s.serial++
		if len(s.recent) > maxRecent {
			s.recent = s.recent[len(s.recent)-maxRecent:]
		}
	}
}

// mark returns a position to pass to since.
func (s *logSink) mark() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial
}

// since joins the warnings and errors logged after mark, or says there were none.
func (s *logSink) since(mark int) string {
	if s == nil {
		return "llama.cpp gave no reason"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.serial - mark
	if n <= 0 {
		return "llama.cpp gave no reason"
	}
	n = min(n, len(s.recent))
	return strings.Join(s.recent[len(s.recent)-n:], "; ")
}

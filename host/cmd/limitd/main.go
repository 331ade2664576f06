// Command limitd is the LIMIT host daemon: it reads an HCL configuration, starts the
// configured plugins and serves the REST API.
//
//	limitd [-config FILE] [-validate]
//	limitd [-config FILE] -restore ARCHIVE
//
// Without -config it runs on the embedded configs/default.hcl.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/limitgraph/limit/configs"
	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/daemon"
	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/sdnotify"
	"github.com/limitgraph/limit/sdk/base"
)

// maxDiags is how many configuration errors limitd prints before it counts the rest
// (warnings before them are printed too).
const maxDiags = 10

func main() {
	// Descriptors limitd inherited (from a shell, a service manager) stay its own: no
	// plugin, and no code a plugin sandboxes, gets them.
	if err := base.CloseOnExecFrom(3); err != nil {
		fmt.Fprintln(os.Stderr, "limitd:", err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("limitd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "HCL configuration `file` (default: the embedded configs/default.hcl)")
	validate := fs.Bool("validate", false, "check the configuration, including each plugin's config block, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	restore := fs.String("restore", "", "write the online backup in `archive` (GET /v1/backup, limitctl backup; - reads standard input) into the configured storage and data_dir, which must hold no other data, and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		// limitd takes no operands: a file named without -config would be ignored, and
		// the daemon started (or validated) on another configuration.
		args := fs.Args()
		if len(args) == 1 && *configPath == "" && strings.HasSuffix(args[0], ".hcl") {
			fmt.Fprintf(stderr, "limitd: unexpected argument %q: to use it as the configuration, run `limitd -config %s`\n", args[0], args[0])
		} else {
			fmt.Fprintf(stderr, "limitd: unexpected argument%s %q: limitd takes only flags (the configuration is given with -config FILE)\n",
				map[bool]string{true: "s"}[len(args) > 1], strings.Join(args, " "))
		}
		fmt.Fprintln(stderr, "usage: limitd [-config FILE] [-validate] [-restore ARCHIVE] [-version]")
		return 2
	}
	restoreSet := false
	fs.Visit(func(f *flag.Flag) { restoreSet = restoreSet || f.Name == "restore" })
	switch {
	case restoreSet && *restore == "":
		// An unset variable in a script (-restore "$ARCHIVE") must not start the daemon.
		fmt.Fprintln(stderr, "limitd: -restore needs an archive (- reads it from standard input)")
		return 2
	case restoreSet && *validate:
		fmt.Fprintln(stderr, "limitd: -restore and -validate do not go together: -restore checks the archive and the configuration itself")
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "limitd", version.Version)
		return 0
	}

	var (
		cfg   *config.Config
		diags hcl.Diagnostics
		files map[string]*hcl.File
	)
	if *configPath == "" {
		cfg, diags = config.Parse(configs.DefaultName, configs.Default, os.LookupEnv)
		files = map[string]*hcl.File{configs.DefaultName: {Bytes: configs.Default}}
	} else {
		cfg, diags, files = config.LoadFile(*configPath, os.LookupEnv)
	}
	printDiags := func(ds hcl.Diagnostics) {
		color := false
		if f, ok := stderr.(*os.File); ok {
			color = term.IsTerminal(int(f.Fd()))
		}
		var buf bytes.Buffer
		w := hcl.NewDiagnosticTextWriter(&buf, files, 0, color)
		// Lines holding a password or key (a plugin's sensitive attribute, a URL with
		// credentials) are never printed: the diagnostic's detail is redacted by whoever
		// made it, but its snippet would quote the file as it is.
		secret := config.SecretLines(cfg, files)
		errs, total := 0, len(ds.Errs())
		for i, d := range ds {
			if d.Severity == hcl.DiagError {
				errs++
			}
			if errs > maxDiags && total > maxDiags+1 {
				// One syntax error (a quote left open) can make dozens more downstream.
				fmt.Fprintf(stderr, "limitd: %d more problems not shown; fix the first ones, the rest may follow from them\n", len(ds)-i)
				return
			}
			// A compact first line, for editors and grep: file:line:column where the
			// problem has a place in the file, else the program's name (a bad seed
			// variable, an unreadable file); then HCL's own rendering with the source
			// snippet and the detail, without its "Error: <summary>" line, said already.
			sev := "error"
			if d.Severity == hcl.DiagWarning {
				sev = "warning"
			}
			if d.Subject != nil {
				fmt.Fprintf(stderr, "%s:%d:%d: %s: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, sev, d.Summary)
			} else {
				fmt.Fprintf(stderr, "limitd: %s: %s\n", sev, d.Summary)
			}
			buf.Reset()
			hidden := config.ShowsSecret(d, secret)
			if hidden {
				plain := *d
				plain.Subject, plain.Context, plain.Expression, plain.EvalContext = nil, nil, nil, nil
				_ = w.WriteDiagnostic(&plain)
			} else {
				_ = w.WriteDiagnostic(d)
			}
			out := buf.Bytes()
			if !color {
				if first, rest, ok := bytes.Cut(out, []byte("\n")); ok && bytes.HasSuffix(first, []byte(": "+d.Summary)) {
					out = rest
				}
			}
			if hidden {
				fmt.Fprintf(stderr, "  (the source line is not shown: it holds a password, key or other sensitive value)\n")
			}
			_, _ = stderr.Write(out)
		}
	}
	if diags.HasErrors() {
		printDiags(diags)
		return 1
	}

	// With host.log_format = "json", every line is one JSON object, the plugins' too: they
	// send theirs to the host as JSON, which go-plugin relays through this logger.
	logger := hclog.New(&hclog.LoggerOptions{
		Name: "limitd", Level: hclog.LevelFromString(cfg.Host.LogLevel), Output: stderr,
		JSONFormat: cfg.Host.LogFormat == "json",
	})
	// The first SIGINT or SIGTERM starts a graceful shutdown; a second stops at once
	// (the plugins, started with a parent-death signal, go with the daemon). One
	// channel, registered before anything starts and with room for both, so a second
	// signal sent right after the first is never dropped.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// SIGHUP asks a daemon to reload its configuration: limitd reloads api.token_file (a
	// token added or revoked without a restart, which would reset every session's
	// interpreter), and nothing else; the default action (exit at once, without a
	// graceful shutdown or a word in the log) would stop it for someone who only wanted a
	// reload. running is the daemon once it has started.
	var running atomic.Pointer[daemon.Daemon]
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		stopping := false
		for {
			select {
			case <-sigs:
			case <-hups:
				reloadTokens(logger, cfg, running.Load())
				continue
			case <-returned:
				return
			}
			if stopping {
				logger.Warn("second signal: stopping at once")
				os.Exit(1)
			}
			stopping = true
			stop()
		}
	}()

	if *validate {
		dataDir, err := filepath.Abs(cfg.Host.DataDir)
		if err != nil {
			fmt.Fprintf(stderr, "limitd: error: Cannot resolve the data directory %q\n\n%v\n", cfg.Host.DataDir, err)
			return 1
		}
		// Only problems: the plugins' start and stop are not news when validating.
		logger.SetLevel(hclog.Warn)
		_, pdiags := daemon.Prepare(ctx, cfg, daemon.PluginDir(cfg, defaultPluginDir()), dataDir, logger)
		diags = append(diags, pdiags...)
		printDiags(diags)
		if diags.HasErrors() {
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", cfg.Filename)
		return 0
	}
	if *restore != "" {
		if diags.HasErrors() {
			printDiags(diags)
			return 1
		}
		logger.SetLevel(hclog.Warn)
		res, err := daemon.Restore(ctx, daemon.Options{Config: cfg, Version: version.Version, Logger: logger, DefaultPluginDir: defaultPluginDir()}, *restore, stderr)
		if err != nil {
			var ds hcl.Diagnostics
			if errors.As(err, &ds) {
				printDiags(ds)
			} else {
				fmt.Fprintf(stderr, "limitd: restore: %v\n", err)
			}
			return 1
		}
		m := res.Manifest
		verb := "restored"
		if res.Resumed {
			verb = "finished restoring"
		}
		fmt.Fprintf(stdout, "%s the backup of node %s made %s (limitd %s, from storage %s) into %s and %s: %d keys in %d namespaces, %d files of data_dir; provenance key %s\n",
			verb, m.Node, m.Made.Format(time.RFC3339), m.Version, m.Storage.Plugin, res.Storage, cfg.Host.DataDir, res.Keys, m.Storage.Namespaces, len(m.Files), m.KeyFingerprint)
		return 0
	}
	if len(diags) > 0 {
		printDiags(diags)
	}
	if sel := cfg.SelectedStorage(); sel != nil && sel.URLFromEnv {
		logger.Info("the PostgreSQL storage's URL is taken from the environment variable DATABASE_URL (over any url in the block's config)", "storage", sel.Name)
	}

	d, sdiags := daemon.Start(ctx, daemon.Options{
		Config: cfg, Version: version.Version, Logger: logger, DefaultPluginDir: defaultPluginDir(),
	})
	if sdiags.HasErrors() {
		printDiags(sdiags)
		return 1
	}
	running.Store(d)
	fmt.Fprintf(stdout, "limitd %s listening on http://%s\n", version.Version, d.Addr())
	// Under systemd with Type=notify, the unit is started once the API serves.
	notify := func(state string) {
		if _, err := sdnotify.Notify(state); err != nil {
			logger.Warn("cannot notify systemd (NOTIFY_SOCKET)", "state", state, "error", err)
		}
	}
	notify(sdnotify.Ready)
	code := 0
	select {
	case <-ctx.Done():
		notify(sdnotify.Stopping)
		d.Drain()
		if delay := cfg.API.DrainDelay; delay > 0 {
			// The listener stays open, answering new requests (readiness included) 503, so
			// that a load balancer takes the host out before connections are refused.
			logger.Info("draining: new requests are answered 503 until the listener closes (a second signal stops at once)", "drain_delay", delay)
			time.Sleep(delay)
		}
		logger.Info("shutting down: running requests may finish (a second signal stops at once)", "reason", "signal", "within", cfg.API.ShutdownTimeout)
	case err := <-d.Done():
		notify(sdnotify.Stopping)
		logger.Error("API server stopped", "error", err)
		code = 1
	}
	// The whole shutdown, stopping what still runs and the plugins included, fits in
	// api.shutdown_timeout.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.API.ShutdownTimeout)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		logger.Warn("shutdown", "error", err)
	}
	return code
}

// reloadTokens answers a SIGHUP: d (nil before it has started) reads api.token_file
// again; the rest of the configuration takes a restart, as the log says.
func reloadTokens(logger hclog.Logger, cfg *config.Config, d *daemon.Daemon) {
	const rest = "the rest of the configuration is read only at start: restart limitd (SIGTERM, then start it again) to apply other changes"
	switch {
	case d == nil:
		logger.Warn("SIGHUP before limitd has started: nothing reloaded; send it again once limitd listens")
	case cfg.API.TokenFile == "":
		logger.Warn("SIGHUP: the API runs without api.token_file, so there are no tokens to reload; " + rest)
	default:
		n, diags := d.ReloadTokens()
		for _, diag := range diags {
			// Never the file's lines: the diagnostics say which line, not what it holds.
			msg := diag.Summary
			if diag.Detail != "" {
				msg += ": " + diag.Detail
			}
			if diag.Severity == hcl.DiagError {
				logger.Error("SIGHUP: api.token_file not reloaded, the tokens in use stay", "token_file", cfg.API.TokenFile, "error", msg)
			} else {
				logger.Warn("SIGHUP: api.token_file", "token_file", cfg.API.TokenFile, "warning", msg)
			}
		}
		if !diags.HasErrors() {
			logger.Info("SIGHUP: api.token_file reloaded; "+rest, "token_file", cfg.API.TokenFile, "tokens", n)
		}
	}
}

// defaultPluginDir is the "plugins" folder beside the limitd binary (bin/plugins after
// `make build`).
func defaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "plugins"
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

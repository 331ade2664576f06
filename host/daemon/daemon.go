// Package daemon assembles the host from its configuration: it resolves and checks every
// plugin, starts the storage backend and governance rules under supervision, prepares the
// runner pool, and serves the API until shut down.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/api"
	"github.com/limitgraph/limit/host/backup"
	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/peercred"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// Specs are the checked, ready-to-launch plugins of a configuration.
type Specs struct {
	Storage plugins.Spec
	Rules   []plugins.Spec
	Runners map[string]plugins.Spec
}

// Options configure a daemon.
type Options struct {
	Config *config.Config
	// Version of the host.
	Version string
	Logger  hclog.Logger
	// DefaultPluginDir is used when the config sets no plugin_dir: the "plugins" folder
	// beside the limitd binary.
	DefaultPluginDir string
	// HealthInterval is how often supervised plugins are pinged; zero means 1s.
	HealthInterval time.Duration
}

// PluginDir returns the directory plugin binaries are looked up in.
func PluginDir(cfg *config.Config, def string) string {
	if cfg.Host.PluginDir != "" {
		return cfg.Host.PluginDir
	}
	return def
}

// DataDir returns the absolute data directory, created with mode 0700.
func DataDir(cfg *config.Config) (string, error) {
	dir, err := filepath.Abs(cfg.Host.DataDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data_dir: %w", err)
	}
	return dir, nil
}

// dataDirDiag reports why dir, the absolute data directory, cannot be used, pointing at
// host.data_dir: it, or the nearest folder above it when it does not exist yet, must be
// a directory this process can write to. It creates nothing but a probe file, removed
// at once, in the data directory.
func dataDirDiag(cfg *config.Config, dir string) *hcl.Diagnostic {
	err := usableDir(dir)
	if err == nil {
		return nil
	}
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Unusable data_dir",
		Detail: fmt.Sprintf("%s. data_dir must be a directory limitd can write to (it is created, with its parents, when missing); fix its permissions or choose another one.",
			err),
	}
	if cfg.Host.DataDirRange.Filename != "" {
		d.Subject = cfg.Host.DataDirRange.Ptr()
	} else {
		d.Detail += fmt.Sprintf(" The file does not set host.data_dir, so it is the default %q.", config.DefaultDataDir)
	}
	return d
}

func usableDir(dir string) error {
	for p := dir; ; {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			parent := filepath.Dir(p)
			if parent == p {
				return err
			}
			p = parent
			continue
		case err != nil:
			return err
		case !fi.IsDir() && p == dir:
			return fmt.Errorf("%s is not a directory", dir)
		case !fi.IsDir():
			return fmt.Errorf("cannot create %s: %s is not a directory", dir, p)
		}
		f, err := os.CreateTemp(p, ".limitd-write-check-*")
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the probe's name means nothing to the user
			}
			err = fmt.Errorf("cannot write in %s: %w", p, err)
			if p != dir {
				return fmt.Errorf("cannot create %s: %w", dir, err)
			}
			return err
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	}
}

// Prepare checks the data directory and every plugin block of cfg: the binary is found (and matches its pin),
// it starts and is of the right kind, its config block is decoded against the schema the
// plugin reports, and the plugin accepts it. Each check runs a short-lived probe process.
// Problems come back as diagnostics pointing into the config file.
func Prepare(ctx context.Context, cfg *config.Config, pluginDir, dataDir string, logger hclog.Logger) (Specs, hcl.Diagnostics) {
	return prepare(ctx, cfg, pluginDir, dataDir, "", logger)
}

// prepare is Prepare with the plugins' Unix sockets in socketDir (the run directory of
// the data_dir's lock holder; "" for the system's temporary directory).
func prepare(ctx context.Context, cfg *config.Config, pluginDir, dataDir, socketDir string, logger hclog.Logger) (Specs, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	specs := Specs{Runners: map[string]plugins.Spec{}}
	if d := dataDirDiag(cfg, dataDir); d != nil {
		// Plugins given a data directory they cannot use fail in confusing ways.
		return specs, hcl.Diagnostics{d}
	}
	prep := func(b *config.PluginBlock) (plugins.Spec, bool) {
		spec, ds := prepareBlock(ctx, cfg, b, pluginDir, dataDir, socketDir, logger)
		diags = append(diags, ds...)
		return spec, !ds.HasErrors()
	}
	if b := cfg.SelectedStorage(); b != nil {
		specs.Storage, _ = prep(b)
	} else {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "no storage backend is configured"})
	}
	for _, b := range cfg.Governance.Rules {
		if s, ok := prep(b); ok {
			specs.Rules = append(specs.Rules, s)
		}
	}
	for _, b := range cfg.Runners {
		if s, ok := prep(b); ok {
			specs.Runners[b.Name] = s
		}
	}
	return specs, diags
}

// subjectOf returns a pointer to rng, or nil when rng does not come from the file.
func subjectOf(rng hcl.Range) *hcl.Range {
	if rng.Filename == "" {
		return nil
	}
	return rng.Ptr()
}

func blockDiag(b *config.PluginBlock, subject hcl.Range, summary string, err error) *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: b.String() + ": " + summary, Detail: err.Error()}
	if subject.Filename == "" {
		subject = b.DeclRange
	}
	if subject.Filename != "" {
		d.Subject = subject.Ptr()
	}
	return d
}

func prepareBlock(ctx context.Context, cfg *config.Config, b *config.PluginBlock, pluginDir, dataDir, socketDir string, logger hclog.Logger) (plugins.Spec, hcl.Diagnostics) {
	spec := plugins.Spec{
		Kind: b.Kind, Name: b.Name, SHA256: b.SHA256, Env: b.Env, DataDir: dataDir, SocketDir: socketDir,
		StartTimeout: cfg.Host.PluginStartTimeout, ConfigureTimeout: cfg.Host.PluginConfigureTimeout, LogLevel: cfg.Host.LogLevel, Pool: b.PoolSize(),
		IdleTimeout: b.RunnerIdleTimeout(), MaxProcesses: b.MaxProcesses, AllowUserNetwork: b.AllowUserNetwork,
	}
	path, err := plugins.Resolve(pluginDir, b.Plugin, nil)
	if err != nil {
		return spec, hcl.Diagnostics{blockDiag(b, b.PluginRange, "plugin binary not usable", err)}
	}
	spec.Path = path
	if len(b.SHA256) > 0 {
		if err := plugins.VerifySHA256(path, b.SHA256); err != nil {
			return spec, hcl.Diagnostics{blockDiag(b, b.SHA256Range, "plugin binary does not match its sha256 pin", err)}
		}
	}
	p, err := plugins.Launch(ctx, spec, checkLogger{logger.Named(spec.ID())})
	if err != nil {
		return spec, hcl.Diagnostics{blockDiag(b, b.PluginRange, "plugin failed to start", err)}
	}
	defer p.Kill()
	if stale := firstPartyVersion(path, p.Info.Version); stale != "" {
		logger.Warn("a first-party plugin binary is not of this limitd's build: it may be left over from another version in plugin_dir; rebuild the plugins with limitd (make build)",
			"plugin", spec.ID(), "path", path, "plugin_version", stale, "limitd_version", version.Version)
	}
	schema, err := p.Schema(ctx)
	if err != nil {
		return spec, hcl.Diagnostics{blockDiag(b, b.PluginRange, "plugin did not report its config schema", err)}
	}
	raw, diags := config.DecodePluginConfig(b, schema)
	if diags.HasErrors() {
		return spec, diags
	}
	spec.Config = raw
	p.Spec.Config = raw
	if err := p.Configure(ctx, true); err != nil {
		var ce *plugins.ConfigError
		if errors.As(err, &ce) {
			return spec, append(diags, config.PluginDiagnostics(b, ce.Diagnostics)...)
		}
		return spec, append(diags, blockDiag(b, b.ConfigRange, "plugin could not check its configuration", err))
	}
	if b.Kind == base.KindRunner {
		// What a user's session may lower but not raise (see session.Manager.CheckUser).
		spec.Limits, spec.LimitsReported, err = p.ReportedLimits(ctx)
		if err != nil {
			return spec, append(diags, blockDiag(b, b.ConfigRange, "plugin could not report the limits of its configuration", err))
		}
	}
	return spec, append(diags, config.PluginDiagnostics(b, p.ConfigWarnings)...)
}

// firstPartyPlugins are the binaries the Makefile builds with limitd, and stamps with its
// version (host/version.Version).
var firstPartyPlugins = []string{
	"limit-storage-bolt", "limit-storage-file", "limit-storage-sqlite", "limit-storage-postgres",
	"limit-runner-python", "limit-runner-llama", "limit-runner-llm",
	"limit-governance-jailbreak", "limit-governance-codesafety", "limit-governance-anomaly",
}

// firstPartyVersion returns the version a first-party plugin binary at path reports when
// it is not limitd's own (a binary of another build left in plugin_dir), else "". Other
// plugins have versions of their own.
func firstPartyVersion(path, reported string) string {
	if !slices.Contains(firstPartyPlugins, filepath.Base(path)) || reported == version.Version {
		return ""
	}
	return reported
}

// keyMismatchDiags is the refusal to start of a host whose provenance key is not the one
// its provenance in storage is signed with: every chain would fail to verify, and no trace
// could be exported or extended.
func keyMismatchDiags(keyPath string, created bool, e *trace.KeyMismatchError) hcl.Diagnostics {
	var what string
	switch {
	case created:
		what = fmt.Sprintf("The provenance key file %s is missing, so a new key (%s) would sign from now on, but storage holds provenance signed by key %s. Every stored chain would then fail to verify, and none could be exported or extended.", keyPath, e.Held, e.Signed)
	case e.Unclaimed:
		what = fmt.Sprintf("The provenance key file %s holds key %s, but storage holds provenance signed by key %s: the key file was replaced. Every stored chain would fail to verify, and none could be exported or extended.", keyPath, e.Held, e.Signed)
	default:
		what = fmt.Sprintf("The provenance key file %s holds key %s, but this host (node %s) signed the provenance in storage with key %s: the key file was replaced. Every stored chain would fail to verify, and none could be exported or extended.", keyPath, e.Held, e.Node, e.Signed)
	}
	how := fmt.Sprintf(" Restore the key file of fingerprint %s (the SHA-256 of its public half, as GET /v1/provenance/key showed it) from a backup to %s, mode 0600; or, to start over with a new key, move the old storage data aside (the traces in it stay verifiable only with the old key's public half).", e.Signed, keyPath)
	if created {
		how += " The new key was not kept."
	}
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Provenance key does not match storage", Detail: what + how}}
}

// startDiags reports a supervised plugin's failed start at its block in the file: what it
// said of its configuration (a path -validate could not check, such as a directory that
// cannot be created) at the attributes it named, anything else at the block.
func startDiags(b *config.PluginBlock, summary string, err error) hcl.Diagnostics {
	if b == nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error()}}
	}
	var ce *plugins.ConfigError
	if errors.As(err, &ce) {
		return config.PluginDiagnostics(b, ce.Diagnostics)
	}
	return hcl.Diagnostics{blockDiag(b, b.DeclRange, "plugin failed to start", err)}
}

// checkLogger is the logger of a plugin process started to check its configuration and
// stopped once it has: go-plugin's "plugin process exited" for it, logged at INFO before
// the daemon had even started, read like a crash; it goes to DEBUG, saying why.
type checkLogger struct{ hclog.Logger }

func (l checkLogger) Info(msg string, args ...any) {
	if msg == "plugin process exited" {
		l.Logger.Debug("plugin process exited after its configuration was checked", args...)
		return
	}
	l.Logger.Info(msg, args...)
}

// Daemon is a running host.
type Daemon struct {
	opts     Options
	logger   hclog.Logger
	storage  *plugins.Managed
	Store    *plugins.Storage
	rules    []*plugins.Managed
	Runners  *plugins.Runners
	Sessions *session.Manager
	Traces   *trace.Store
	server   *http.Server
	api      *api.Server
	listener net.Listener
	serveErr chan error
	stopOnce sync.Once
	// stopExecs stops the executions still running when a shutdown's grace runs out.
	stopExecs context.CancelFunc
	// stopSweep stops the retention sweep (host.deleted_retention); sweepDone is closed
	// once it has stopped.
	stopSweep context.CancelFunc
	sweepDone chan struct{}
	// lock holds the data_dir until the daemon has stopped.
	lock *dirLock
	// disk keeps host.min_free_disk free on the data_dir's disk.
	disk *diskspace.Guard
}

// Start prepares every plugin, starts the supervised ones, and begins serving the API.
// Configuration problems come back as diagnostics; other failures as an error diagnostic.
func Start(ctx context.Context, opts Options) (*Daemon, hcl.Diagnostics) {
	cfg := opts.Config
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	fail := func(summary string, err error) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error()}}
	}
	dataDir, err := DataDir(cfg)
	if err != nil {
		diag := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unusable data_dir", Detail: err.Error() + "."}
		if abs, aerr := filepath.Abs(cfg.Host.DataDir); aerr == nil {
			if d := dataDirDiag(cfg, abs); d != nil {
				diag = d
			}
		}
		diag.Subject = subjectOf(cfg.Host.DataDirRange)
		return nil, hcl.Diagnostics{diag}
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unusable data_dir", Detail: err.Error() + ".", Subject: subjectOf(cfg.Host.DataDirRange)}}
	}
	started := false
	defer func() {
		if !started {
			lock.release()
		}
	}()
	node, err := nodeID(dataDir)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unusable data_dir", Detail: err.Error() + ".", Subject: subjectOf(cfg.Host.DataDirRange)}}
	}
	// The journal of pending outcomes is made now, not when an execution first needs it:
	// by then the disk may be full, and the outcome of code that ran lost.
	if err := os.MkdirAll(filepath.Join(dataDir, execution.PendingDir), 0o700); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unusable data_dir",
			Detail: fmt.Sprintf("create the journal of pending outcomes: %v.", err), Subject: subjectOf(cfg.Host.DataDirRange)}}
	}
	// The plugins' sockets go to the run directory, where those a limitd killed with
	// SIGKILL left are removed now: only the lock's holder may.
	run, err := openRunDir(dataDir)
	switch {
	case err != nil && run.Fallback:
		// The fallback lives in the shared temporary directory, where anyone may have
		// taken its name: the plugins' sockets go where they went before run dirs.
		logger.Warn("data_dir is too long for Unix socket paths under it and no fallback run directory could be made: plugins' sockets go to the system's temporary directory, where a limitd killed with SIGKILL leaves them", "error", err)
	case err != nil:
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unusable data_dir", Detail: err.Error() + ".", Subject: subjectOf(cfg.Host.DataDirRange)}}
	case run.Fallback:
		logger.Info("data_dir is too long for Unix socket paths under it: plugins' sockets go to a run directory named for it in the system's temporary directory", "run_dir", run.Path)
	}
	if n, err := backup.SweepTemp(dataDir); err != nil {
		logger.Warn("could not remove the folders of backups an earlier limitd did not finish", "data_dir", dataDir, "error", err)
	} else if n > 0 {
		logger.Info("removed the folders of backups an earlier limitd did not finish", "removed", n)
	}
	if run.Swept > 0 {
		logger.Info("removed the plugin sockets an earlier limitd left", "run_dir", run.Path, "removed", run.Swept)
	}
	// The address first: a busy port is said before any plugin starts (and replays a log).
	ln, err := listen(cfg.Host.Listen)
	if err != nil {
		diags := fail("cannot listen on "+cfg.Host.Listen, err)
		diags[0].Detail += ". Free the port, or set host.listen (or API_HOST and API_PORT) to another address."
		diags[0].Subject = subjectOf(cfg.Host.ListenRange)
		return nil, diags
	}
	defer func() {
		if !started {
			ln.Close()
		}
	}()
	specs, diags := prepare(ctx, cfg, PluginDir(cfg, opts.DefaultPluginDir), dataDir, run.Path, logger)
	if diags.HasErrors() {
		return nil, diags
	}
	d := &Daemon{opts: opts, logger: logger, serveErr: make(chan error, 1), lock: lock}
	d.storage, err = plugins.StartManaged(ctx, specs.Storage, logger.Named(specs.Storage.ID()), opts.HealthInterval)
	if err != nil {
		return nil, startDiags(cfg.SelectedStorage(), "storage plugin failed to start", err)
	}
	d.Store = plugins.NewStorage(d.storage)
	for _, s := range specs.Rules {
		m, err := plugins.StartManaged(ctx, s, logger.Named(s.ID()), opts.HealthInterval)
		if err != nil {
			d.stopPlugins(ctx)
			var b *config.PluginBlock
			for _, rb := range cfg.Governance.Rules {
				if rb.Name == s.Name {
					b = rb
				}
			}
			return nil, startDiags(b, "governance rule failed to start", err)
		}
		d.rules = append(d.rules, m)
	}
	d.Runners = plugins.NewRunners(specs.Runners, logger.Named("runner"))

	// A storage a restore did not finish holds part of a backup: nothing may run on it.
	if err := checkRestoreMarker(ctx, d.Store); err != nil {
		d.stopPlugins(ctx)
		return nil, fail("Storage holds an unfinished restore", err)
	}
	// Before anything is written (a new key included): data a newer limitd wrote would be
	// misread, its new fields taken for tampering.
	if was, err := claimFormat(ctx, d.Store); err != nil {
		d.stopPlugins(ctx)
		var newer *FormatError
		if errors.As(err, &newer) {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Storage was written by a newer limitd", Detail: err.Error() + "."}}
		}
		return nil, fail("cannot check the storage format", err)
	} else if was == 0 {
		logger.Info("new storage: format recorded", "format", StorageFormat)
	} else if was < StorageFormat {
		logger.Info("storage format recorded", "from", was, "to", StorageFormat)
	}
	key, created, err := trace.OpenKey(dataDir)
	if err != nil {
		d.stopPlugins(ctx)
		return nil, fail("cannot load the host's signing key", err)
	}
	keyPath := filepath.Join(dataDir, trace.KeyFile)
	trusted := map[string]bool{}
	var trustedKeys []ed25519.PublicKey
	for _, k := range cfg.Host.TrustedKeys {
		fp := trace.Fingerprint(k.Key)
		if fp == key.Fingerprint() {
			logger.Warn("host.trusted_keys lists this host's own provenance key", "source", k.Source, "fingerprint", fp)
			continue
		}
		trusted[fp] = true
		trustedKeys = append(trustedKeys, k.Key)
		logger.Info("trusting another host's provenance key", "source", k.Source, "fingerprint", fp)
	}
	d.Traces, err = trace.New(d.Store, key, trace.Options{TempDir: dataDir, TrustedKeys: trustedKeys})
	if err != nil {
		d.stopPlugins(ctx)
		return nil, fail("cannot open the trace store", err)
	}
	if err := d.Traces.ClaimKey(ctx, node, created); err != nil {
		d.stopPlugins(ctx)
		if created {
			// Nothing is signed with it yet: without it, the next start checks again as a
			// first one (and says the key file is missing, not that it holds another key).
			if rerr := os.Remove(keyPath); rerr != nil {
				logger.Warn("cannot remove the provenance key just created", "path", keyPath, "error", rerr)
			}
		}
		var mismatch *trace.KeyMismatchError
		if !errors.As(err, &mismatch) {
			return nil, fail("cannot check the host's signing key against storage", err)
		}
		return nil, keyMismatchDiags(keyPath, created, mismatch)
	}
	if created {
		logger.Warn("created a new provenance key", "path", keyPath, "fingerprint", key.Fingerprint(), "node", node)
	} else {
		logger.Info("provenance key loaded", "path", keyPath, "fingerprint", key.Fingerprint(), "node", node)
	}
	if keys, err := d.Traces.KeyNodes(ctx); err != nil {
		logger.Warn("cannot read which other hosts share this storage", "error", err)
	} else {
		logSharedStorage(logger, keys, node, key.Fingerprint(), trusted)
	}
	rules, err := governance.NewEvaluator(ctx, d.rules)
	if err != nil {
		d.stopPlugins(ctx)
		return nil, fail("governance rules", err)
	}
	for _, r := range rules.Rules() {
		d.logger.Info("governance rule ready", "rule", r.Plugin, "rules", len(r.Rules), "reads", r.Reads())
	}
	stats := &governance.StatsStore{Store: d.Store, Namespace: func(id string) string {
		return trace.SessionNamespace(trace.DefaultTenant, id)
	}}
	d.Sessions = session.NewManager(session.Options{
		Store: d.Store, Runners: d.Runners, DataDir: dataDir, Node: node,
		Policies: governance.PolicyNames(), DefaultPolicy: cfg.Governance.Policy,
		Logger: logger.Named("sessions"),
	})
	// Sessions stored before the owner index get their entries (once); until that has
	// worked, a user's listing reads every session.
	if n, err := d.Sessions.IndexOwners(ctx); err != nil {
		logger.Warn("indexing sessions by owner failed; a user's session listing reads every session until the next start", "error", err)
	} else if n > 0 {
		logger.Info("indexed sessions by owner", "sessions", n)
	}
	// The disk under data_dir keeps a reserve: executions are refused while it is short.
	d.disk = &diskspace.Guard{Dir: dataDir, Reserve: cfg.Host.MinFreeDisk, Logger: logger.Named("disk")}
	d.disk.Status() // a disk below its reserve already is logged now
	var stopping context.Context
	stopping, d.stopExecs = context.WithCancel(context.Background())
	engine := &execution.Engine{Sessions: d.Sessions, Traces: d.Traces, Rules: rules, Stats: stats, Logger: logger.Named("execution"),
		Stopping: stopping, Store: d.Store, Node: d.Sessions.Node(), JournalDir: filepath.Join(dataDir, execution.PendingDir),
		StorageReady: func() error {
			if d.storage == nil {
				return nil
			}
			if why := d.storage.Unavailable(); why != "" {
				return fmt.Errorf("%w: %s", storage.ErrUnavailable, why)
			}
			return nil
		},
		DiskReady: d.disk.Check}
	// Executions that ran to their end but whose outcome the storage did not take get it
	// now (or later, retried), before the sweep below could call them interrupted.
	if n, err := engine.ReplayPending(ctx); err != nil {
		logger.Warn("storing the outcomes of executions the storage did not take failed; retried in the background", "error", err)
	} else if n > 0 {
		logger.Info("stored the pending outcomes of executions", "traces", n)
	}
	// Executions the last run left running (it was killed or crashed) get their outcome.
	if n, err := engine.FinishInterrupted(ctx); err != nil {
		logger.Warn("settling the executions the last run left running failed; retried at the next start", "error", err)
	} else if n > 0 {
		logger.Warn("executions interrupted when limitd last stopped are recorded as interrupted", "traces", n)
	}

	d.listener = ln
	d.api = api.New(api.Options{
		Version: opts.Version, Plugins: d.PluginStatus, Disk: d.disk.Status, PluginRestarts: d.pluginRestarts, Collectors: d.Store.Collectors(), MaxBodyBytes: cfg.API.MaxBodyBytes, MaxBodyBytesInFlight: cfg.API.MaxBodyBytesInFlight, Logger: logger.Named("api"),
		Sessions: d.Sessions, Engine: engine, Traces: d.Traces, Rules: rules, Stats: stats, DefaultPolicy: cfg.Governance.Policy,
		Store: d.Store, RD: cfg.RD, RefusePeer: refuseSandboxed(d.Runners.SandboxUID, logger.Named("api")),
		Tokens: cfg.API.Tokens, CheckHosts: true, AllowedHosts: cfg.API.AllowedHosts,
		Backup: func(ctx context.Context) (*backup.Backup, error) {
			info := d.Store.PluginInfo()
			return backup.Prepare(ctx, backup.Source{
				DataDir: dataDir, Files: BackupFiles, Dirs: []string{execution.PendingDir}, Store: d.Store, Room: d.disk.Room,
				Manifest: backup.Manifest{Version: opts.Version, Node: node, KeyFingerprint: key.Fingerprint(), StorageFormat: StorageFormat,
					Storage: backup.StorageInfo{Plugin: info.Name, PluginVersion: info.Version}},
			})
		},
	})
	if len(cfg.API.Tokens) > 0 {
		logger.Info("the API requires a bearer token", "token_file", cfg.API.TokenFile, "tokens", len(cfg.API.Tokens))
	}
	d.server = &http.Server{
		Handler:           d.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.API.ReadTimeout,
		WriteTimeout:      cfg.API.WriteTimeout,
		ErrorLog:          logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		ConnContext:       withPeer,
		// "OPTIONS *" goes to the API (404 problem+json with X-Request-Id), not to
		// net/http's own empty 200.
		DisableGeneralOptionsHandler: true,
	}
	go func() { d.serveErr <- d.server.Serve(api.ProblemListener(ln, logger.Named("api"))) }()
	// Deleted sessions past host.deleted_retention are purged with their traces, now and
	// then periodically, in the background.
	var sweepCtx context.Context
	sweepCtx, d.stopSweep = context.WithCancel(context.Background())
	d.sweepDone = make(chan struct{})
	retention := &session.Retention{Sessions: d.Sessions, Traces: d.Traces, After: cfg.Host.DeletedRetention,
		Logger: logger.Named("retention"), Counted: d.api.CountPurged}
	go func() { defer close(d.sweepDone); retention.Run(sweepCtx) }()
	started = true
	logger.Info("limitd started", "version", opts.Version, "listen", ln.Addr().String(), "data_dir", dataDir, "node", node,
		"storage", specs.Storage.ID(), "runners", d.Runners.Names(), "rules", len(d.rules))
	return d, nil
}

// peer is an API connection; whether code the host sandboxes holds its other end is
// found out once, at its first request.
type peer struct {
	conn    net.Conn
	once    sync.Once
	refused string
}

type peerKey struct{}

func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, &peer{conn: c})
}

// refuseSandboxed refuses requests whose connection comes from a uid a runner's sandbox
// runs code as. The API has no other authentication than being reachable: on loopback
// only, by default, but a session allowed the network shares the host's loopback.
func refuseSandboxed(sandboxUID func(int) bool, logger hclog.Logger) func(*http.Request) string {
	return func(r *http.Request) string {
		p, _ := r.Context().Value(peerKey{}).(*peer)
		if p == nil {
			return ""
		}
		p.once.Do(func() {
			local, ok1 := p.conn.LocalAddr().(*net.TCPAddr)
			remote, ok2 := p.conn.RemoteAddr().(*net.TCPAddr)
			if !ok1 || !ok2 {
				return
			}
			if !sameHost(local.IP, remote.IP) {
				return // from another machine: no code of ours
			}
			uid, found, err := peercred.TCPPeerUID(local.AddrPort(), remote.AddrPort())
			switch {
			case err != nil:
				// Not knowing who is there must not lock everyone out; say so.
				logger.Warn("cannot tell which user an API connection comes from", "remote", remote.String(), "error", err)
			case found && sandboxUID(uid):
				p.refused = fmt.Sprintf("requests from code sandboxed on this machine (uid %d) are refused", uid)
			}
		})
		return p.refused
	}
}

// sameHost reports whether a connection from remote to local comes from this machine:
// over loopback, or from one of its own addresses (code in a session allowed the network
// shares the host's). Only those are looked up in the kernel's socket table, whose size
// grows with the machine's connections.
func sameHost(local, remote net.IP) bool {
	if remote.IsLoopback() || remote.Equal(local) {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: look it up
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(remote) {
			return true
		}
	}
	return false
}

// Addr is the address the API listens on.
func (d *Daemon) Addr() string { return d.listener.Addr().String() }

// Done returns a channel that receives the API server's error if it stops by itself.
func (d *Daemon) Done() <-chan error { return d.serveErr }

// PluginStatus reports every plugin process: storage, rules, then runners per session.
func (d *Daemon) PluginStatus() []plugins.Status {
	out := []plugins.Status{d.storage.Status()}
	for _, r := range d.rules {
		out = append(out, r.Status())
	}
	return append(out, d.Runners.Statuses()...)
}

// pluginRestarts counts the plugin processes restarted or replaced since start: the
// storage's and rules' supervised restarts, the runners' replaced processes.
func (d *Daemon) pluginRestarts() []plugins.RestartCount {
	out := d.storage.RestartCounts()
	for _, r := range d.rules {
		out = append(out, r.RestartCounts()...)
	}
	return append(out, d.Runners.RestartCounts()...)
}

// ReloadTokens reads api.token_file again and, if it is valid, has the API accept its
// tokens from now on (a token added, or one revoked, without a restart that would reset
// every session's interpreter). On any problem the tokens in use stay, and the
// diagnostics say what is wrong; warnings (a file others can read) come with success.
func (d *Daemon) ReloadTokens() (int, hcl.Diagnostics) {
	tokens, diags := d.opts.Config.API.ReloadTokens()
	if diags.HasErrors() {
		return 0, diags
	}
	if err := d.api.SetTokens(tokens); err != nil {
		return 0, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Tokens not reloaded", Detail: err.Error()})
	}
	return len(tokens), diags
}

// Drain makes the API answer new requests with 503 from now on; running requests go on.
// Shutdown drains first too; a caller that reports the shutdown calls Drain before saying
// so, so that no request sent after the report is served.
func (d *Daemon) Drain() {
	d.api.Stop()
	d.pluginsStopping()
}

// pluginsStopping tells the plugins' supervisors the host is shutting down: a plugin
// process that ends from now on is expected to (systemd, stopping limitd, signals every
// process of its unit unless KillMode=mixed), is logged at INFO and is not restarted.
func (d *Daemon) pluginsStopping() {
	for _, m := range append([]*plugins.Managed{d.storage}, d.rules...) {
		if m != nil {
			m.Stopping()
		}
	}
	if d.Runners != nil {
		d.Runners.Stopping()
	}
}

// Shutdown stops accepting requests, lets running ones finish, then stops every plugin
// process, all by ctx's deadline (without one, it waits for running requests). The last
// quarter of the time left, at most shutdownReserve, is kept back: executions still
// running when it starts are stopped, recorded with the shutdown as their outcome and
// answered, and then the plugins are stopped.
func (d *Daemon) Shutdown(ctx context.Context) error {
	var err error
	d.stopOnce.Do(func() {
		d.api.Stop()
		d.pluginsStopping()
		hctx, unhook := ctx, func() bool { return false }
		if deadline, ok := ctx.Deadline(); ok {
			reserve := min(time.Until(deadline)/4, shutdownReserve)
			sctx, cancel := context.WithDeadline(ctx, deadline.Add(-reserve))
			defer cancel()
			unhook = context.AfterFunc(sctx, func() {
				d.logger.Warn("shutdown: stopping the executions still running")
				d.stopExecs()
			})
			var hcancel context.CancelFunc
			hctx, hcancel = context.WithDeadline(ctx, deadline.Add(-reserve/2))
			defer hcancel()
		}
		err = d.server.Shutdown(hctx)
		unhook()
		d.stopExecs()
		// A purge cut short here is completed by the next start's sweep.
		d.stopSweep()
		<-d.sweepDone
		d.stopPlugins(ctx)
		d.lock.release()
		d.logger.Info("limitd stopped")
	})
	return err
}

// shutdownReserve bounds the part of a shutdown's time kept to stop the executions still
// running, record them, answer their clients and stop the plugins.
var shutdownReserve = 5 * time.Second

func (d *Daemon) stopPlugins(ctx context.Context) {
	if d.Runners != nil {
		d.Runners.Close(ctx)
	}
	var wg sync.WaitGroup
	for _, m := range append([]*plugins.Managed{d.storage}, d.rules...) {
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); m.Close() }()
	}
	wg.Wait()
}

// listen binds the API's address: an IPv4 address (0.0.0.0 included) on IPv4 alone, as
// asked (Go's "tcp" would bind 0.0.0.0 on both families, [::]); an IPv6 address, a name
// or an empty host as "tcp" does.
func listen(addr string) (net.Listener, error) {
	network := "tcp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && !strings.Contains(host, ":") {
			network = "tcp4"
		}
	}
	return net.Listen(network, addr)
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/limitgraph/limit/sdk/base"
)

const kindGovernance = base.KindGovernance

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "host"},
		{Type: base.KindStorage, LabelNames: []string{"name"}},
		{Type: base.KindRunner, LabelNames: []string{"name"}},
		{Type: "governance"},
		{Type: "rd"},
		{Type: "api"},
	},
}

var hostSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "listen"},
		{Name: "data_dir"},
		{Name: "plugin_dir"},
		{Name: "log_level"},
		{Name: "log_format"},
		{Name: "storage"},
		{Name: "plugin_start_timeout"},
		{Name: "plugin_configure_timeout"},
		{Name: "trusted_keys"},
		{Name: "deleted_retention"},
		{Name: "min_free_disk"},
	},
}

var pluginBlockSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "plugin"},
		{Name: "sha256"},
		{Name: "env"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "config"}},
}

// runnerBlockSchema is pluginBlockSchema plus what only runner blocks have.
var runnerBlockSchema = &hcl.BodySchema{
	Attributes: append(append([]hcl.AttributeSchema{}, pluginBlockSchema.Attributes...),
		hcl.AttributeSchema{Name: "pool"}, hcl.AttributeSchema{Name: "idle_timeout"}, hcl.AttributeSchema{Name: "max_processes"},
		hcl.AttributeSchema{Name: "allow_user_network"}),
	Blocks: pluginBlockSchema.Blocks,
}

// DefaultRunnerPool is a runner block's pool when it sets none, and MaxRunnerPool the
// largest it may set.
const (
	DefaultRunnerPool = 1
	MaxRunnerPool     = 64
)

// DefaultRunnerIdleTimeout is a runner block's idle_timeout when it sets none: a session's
// runner process that has run nothing for that long is stopped.
const DefaultRunnerIdleTimeout = 30 * time.Minute

// MaxRunnerProcesses is the largest max_processes a runner block may set.
const MaxRunnerProcesses = 1 << 20

var governanceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "policy"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "rule", LabelNames: []string{"name"}}},
}

var rdSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "alpha"},
		{Name: "epsilon"},
		{Name: "max_iter"},
		{Name: "tol"},
		{Name: "timeout"},
	},
}

var apiSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "max_body_bytes"},
		{Name: "max_body_bytes_in_flight"},
		{Name: "read_timeout"},
		{Name: "write_timeout"},
		{Name: "shutdown_timeout"},
		{Name: "drain_delay"},
		{Name: "token_file"},
		{Name: "allowed_hosts"},
	},
}

// Parse decodes the configuration in src, which is HCL native syntax, or HCL's JSON syntax
// when filename ends in ".json". filename names the source in diagnostics. lookupEnv backs
// the env() function and the environment overrides; it is os.LookupEnv in production and
// may be nil, meaning an empty environment.
//
// The returned Config is never nil, but is meaningful only when the diagnostics hold no
// error. To print the diagnostics with snippets, give hcl.NewDiagnosticTextWriter the map
// {filename: &hcl.File{Bytes: src}}, or use LoadFile, which returns the map.
func Parse(filename string, src []byte, lookupEnv func(string) (string, bool)) (*Config, hcl.Diagnostics) {
	cfg, diags, _ := parse(hclparse.NewParser(), filename, src, lookupEnv)
	return cfg, diags
}

// LoadFile reads and decodes the configuration file at path, like Parse. It also returns
// the parsed files by name, which hcl.NewDiagnosticTextWriter needs to print snippets.
// A path that is not a readable file, or a file larger than MaxFileBytes, is an error.
func LoadFile(path string, lookupEnv func(string) (string, bool)) (*Config, hcl.Diagnostics, map[string]*hcl.File) {
	p := hclparse.NewParser()
	src, diag := readFile(path)
	if diag != nil {
		cfg, _ := decodeFile(nil, nil, path, nil)
		return cfg, hcl.Diagnostics{diag}, p.Files()
	}
	cfg, diags, files := parse(p, path, src, lookupEnv)
	var body *hclsyntax.Body
	if f := files[path]; f != nil {
		body, _ = f.Body.(*hclsyntax.Body)
	}
	if body != nil && !diags.HasErrors() && len(body.Blocks) == 0 && len(body.Attributes) == 0 {
		// Most likely the wrong file, or one cut short: say what runs instead.
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "The configuration file declares nothing",
			Detail: fmt.Sprintf("%s has no block: limitd runs on its defaults (listen %s, data_dir %s, storage %q, no runner). See configs/default.hcl for a complete file.",
				path, DefaultListen, DefaultDataDir, DefaultStorage),
			Subject: &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos},
		})
	}
	return cfg, diags, files
}

// readFile reads a configuration file, refusing a directory and reading at most one byte
// more than MaxFileBytes (checkSource reports a larger file).
func readFile(path string) ([]byte, *hcl.Diagnostic) {
	fail := func(detail string, args ...any) ([]byte, *hcl.Diagnostic) {
		return nil, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read the configuration file " + strconv.Quote(path),
			Detail:   fmt.Sprintf(detail, args...),
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return fail("%s. Check the path given to -config.", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fail("%s is a directory; -config takes an HCL file such as configs/default.hcl.", path)
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return fail("%s.", err)
	}
	return src, nil
}

// parse checks src with checkSource, parses it with p and decodes it.
func parse(p *hclparse.Parser, filename string, src []byte, lookupEnv func(string) (string, bool)) (*Config, hcl.Diagnostics, map[string]*hcl.File) {
	isJSON := strings.HasSuffix(filename, ".json")
	var file *hcl.File
	diags := checkSource(filename, src, isJSON)
	if diags.HasErrors() {
		// Unparsed, but the snippet of the offending line can still be shown.
		files := p.Files()
		files[filename] = &hcl.File{Bytes: src}
		cfg, _ := decodeFile(nil, nil, filename, nil)
		return cfg, diags, files
	}
	if isJSON {
		file, diags = p.ParseJSON(src, filename)
	} else {
		file, diags = p.ParseHCL(src, filename)
	}
	cfg, more := decodeFile(file, src, filename, lookupEnv)
	return cfg, append(diags, more...), p.Files()
}

// decodeFile decodes a parsed file, even one with syntax errors, so that a single run
// reports as many problems as it can.
func decodeFile(file *hcl.File, src []byte, filename string, lookupEnv func(string) (string, bool)) (*Config, hcl.Diagnostics) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	cfg := &Config{
		Host: Host{
			Listen:                 DefaultListen,
			DataDir:                DefaultDataDir,
			LogLevel:               DefaultLogLevel,
			LogFormat:              DefaultLogFormat,
			PluginStartTimeout:     DefaultPluginStartTimeout,
			PluginConfigureTimeout: DefaultPluginConfigureTimeout,
		},
		Governance: Governance{Policy: DefaultPolicy},
		RD: RD{
			Alpha:   DefaultAlpha,
			Epsilon: DefaultEpsilon,
			Tol:     DefaultTol,
			MaxIter: DefaultMaxIter,
			Timeout: DefaultRDTimeout,
		},
		API: API{
			MaxBodyBytes:         DefaultMaxBodyBytes,
			MaxBodyBytesInFlight: DefaultMaxBodyBytesInFlight,
			ReadTimeout:          DefaultReadTimeout,
			WriteTimeout:         DefaultWriteTimeout,
			ShutdownTimeout:      DefaultShutdownTimeout,
		},
		Filename: filename,
	}
	d := &decoder{ctx: newEvalContext(lookupEnv), src: src}

	body := hcl.EmptyBody()
	if file != nil && file.Body != nil {
		body = file.Body
	}
	content, diags := body.Content(rootSchema)
	d.add(diags)

	singles := map[string]*hcl.Block{}
	labels := map[string]map[string]*hcl.Block{}
	var storageAttr *hcl.Attribute
	for _, blk := range content.Blocks {
		switch blk.Type {
		case base.KindStorage, base.KindRunner:
			pb := d.pluginBlock(blk, blk.Type, labels)
			if pb == nil {
				continue
			}
			if blk.Type == base.KindStorage {
				cfg.Storage = append(cfg.Storage, pb)
			} else {
				cfg.Runners = append(cfg.Runners, pb)
			}
			continue
		}
		if prev := singles[blk.Type]; prev != nil {
			d.add(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Duplicate %s block", blk.Type),
				Detail: fmt.Sprintf("A %s block was already declared at %s. A file may have only one; merge them.",
					blk.Type, prev.DefRange),
				Subject: blk.DefRange.Ptr(),
			}})
			continue
		}
		singles[blk.Type] = blk
		switch blk.Type {
		case "host":
			storageAttr = d.host(blk, &cfg.Host)
		case "governance":
			d.governance(blk, &cfg.Governance)
		case "rd":
			d.rd(blk, &cfg.RD)
		case "api":
			d.api(blk, &cfg.API)
		}
	}

	applyEnv(cfg, lookupEnv, d)
	d.selectStorage(cfg, storageAttr, lookupEnv)
	d.warnListen(cfg)
	return cfg, d.diags
}

func (d *decoder) host(blk *hcl.Block, h *Host) (storageAttr *hcl.Attribute) {
	h.DeclRange = blk.DefRange
	content, diags := blk.Body.Content(hostSchema)
	d.add(diags)
	a := content.Attributes

	if s, attr := d.str(a, "listen"); attr != nil {
		d.listen = attr
		if err := checkListen(s); err != nil {
			why := err.Error()
			if d.fromEnv(attr) {
				why = "the value from env() is not (it is not shown: it may be secret)"
			}
			d.invalid(attr, "Invalid listen address",
				"listen must be host:port, e.g. \"127.0.0.1:8080\" or \":8080\" for every interface: %s.", why)
		} else {
			h.Listen = s
			h.ListenRange = attr.Expr.Range()
		}
	}
	if s, attr := d.str(a, "data_dir"); attr != nil {
		if s == "" {
			d.invalid(attr, "Invalid data_dir", "data_dir must not be empty; leave it out to use %q.", DefaultDataDir)
		} else {
			h.DataDir = s
			h.DataDirRange = attr.Expr.Range()
		}
	}
	if s, attr := d.str(a, "plugin_dir"); attr != nil {
		h.PluginDir = s
	}
	if s, attr := d.str(a, "log_level"); attr != nil {
		if !slices.Contains(LogLevels, s) {
			d.invalid(attr, "Invalid log_level", "log_level must be one of %s; got %s.", oneOf(LogLevels), d.quote(attr, s))
		} else {
			h.LogLevel = s
		}
	}
	if s, attr := d.str(a, "log_format"); attr != nil {
		if !slices.Contains(LogFormats, s) {
			d.invalid(attr, "Invalid log_format", "log_format must be one of %s; got %s.", oneOf(LogFormats), d.quote(attr, s))
		} else {
			h.LogFormat = s
		}
	}
	if s, attr := d.str(a, "storage"); attr != nil {
		if s == "" {
			d.invalid(attr, "Invalid storage", "storage must name a storage block; leave it out when there is only one.")
		} else {
			h.StorageName = s
			storageAttr = attr
		}
	}
	if v, attr := d.duration(a, "plugin_start_timeout", false); attr != nil {
		h.PluginStartTimeout = v
	}
	if v, attr := d.duration(a, "plugin_configure_timeout", false); attr != nil {
		h.PluginConfigureTimeout = v
	}
	if entries, attr := d.stringList(a, "trusted_keys"); attr != nil {
		h.TrustedKeys = d.trustedKeys(attr, entries)
	}
	if v, attr := d.duration(a, "deleted_retention", true); attr != nil {
		h.DeletedRetention = v
	}
	if s, attr := d.str(a, "min_free_disk"); attr != nil {
		if r, err := parseReserve(s); err != nil {
			d.invalid(attr, "Invalid min_free_disk",
				"min_free_disk = %s %s. Write a size such as \"512MiB\" or \"2GiB\", a share of the disk such as \"5%%\", or \"0\" to turn the check off; leave it out for the larger of 256 MiB and 2%% of the disk.",
				d.quote(attr, s), err.Error())
		} else {
			h.MinFreeDisk = r
		}
	}
	return storageAttr
}

// pluginBlock decodes a storage, runner or governance rule block. labels records the
// blocks seen so far per kind, to refuse duplicate labels. It returns nil for a duplicate.
func (d *decoder) pluginBlock(blk *hcl.Block, kind string, labels map[string]map[string]*hcl.Block) *PluginBlock {
	name := blk.Labels[0]
	if labels[kind] == nil {
		labels[kind] = map[string]*hcl.Block{}
	}
	what := kind
	if kind == kindGovernance {
		what = "governance rule"
	}
	if prev := labels[kind][name]; prev != nil {
		d.add(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Duplicate %s %q", what, name),
			Detail: fmt.Sprintf("A %s %q block was already declared at %s. Labels must be unique within a kind; rename or remove one.",
				what, name, prev.DefRange),
			Subject: blk.DefRange.Ptr(),
		}})
		return nil
	}
	labels[kind][name] = blk
	if !hclsyntax.ValidIdentifier(name) {
		d.add(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid %s name", what),
			Detail: fmt.Sprintf("%q is not a valid name: a name starts with a letter and holds only letters, digits, underscores and dashes.",
				name),
			Subject: blk.LabelRanges[0].Ptr(),
		}})
	}

	pb := &PluginBlock{
		Kind:        kind,
		Name:        name,
		Plugin:      "limit-" + kind + "-" + name,
		DeclRange:   blk.DefRange,
		ConfigRange: blk.DefRange,
		evalCtx:     d.ctx,
	}
	schema := pluginBlockSchema
	if kind == base.KindRunner {
		schema = runnerBlockSchema
	}
	content, diags := blk.Body.Content(schema)
	d.add(diags)
	a := content.Attributes

	if n, attr := d.int64(a, "pool", 0, MaxRunnerPool); attr != nil {
		if n < 0 || n > MaxRunnerPool {
			d.invalid(attr, "Invalid pool", "pool must be at least 0 (0 starts each runner process when a session needs it) and at most %d; got %d.", MaxRunnerPool, n)
		} else {
			pool := int(n)
			pb.Pool = &pool
		}
	}
	if dur, attr := d.duration(a, "idle_timeout", true); attr != nil {
		pb.IdleTimeout = &dur
	}
	if n, attr := d.int64(a, "max_processes", 0, MaxRunnerProcesses); attr != nil {
		if n < 0 || n > MaxRunnerProcesses {
			d.invalid(attr, "Invalid max_processes", "max_processes must be at least 0 (0 sets no cap) and at most %d; got %d.", MaxRunnerProcesses, n)
		} else {
			pb.MaxProcesses = int(n)
		}
	}
	pb.AllowUserNetwork, _ = d.boolean(a, "allow_user_network")

	if s, attr := d.str(a, "plugin"); attr != nil {
		if strings.TrimSpace(s) == "" {
			d.invalid(attr, "Invalid plugin", "plugin must name a plugin binary; leave it out to use %q.", pb.Plugin)
		} else {
			pb.Plugin = s
			pb.PluginRange = attr.Expr.Range()
		}
	}
	if s, attr := d.str(a, "sha256"); attr != nil {
		sum, err := decodeSHA256(s)
		if err != nil && d.fromEnv(attr) {
			err = fmt.Errorf("%s is not 64 hexadecimal characters", d.quote(attr, s))
		}
		if err != nil {
			d.invalid(attr, "Invalid sha256", "sha256 must be the SHA-256 of the plugin binary as 64 hexadecimal characters, as printed by sha256sum: %s.", err)
		} else {
			pb.SHA256 = sum
			pb.SHA256Range = attr.Expr.Range()
		}
	}
	if m, attr := d.stringMap(a, "env"); attr != nil {
		pb.Env = m
	}
	for _, cb := range content.Blocks {
		if pb.Config != nil {
			d.add(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Duplicate config block",
				Detail:   fmt.Sprintf("A config block was already declared at %s. A %s block may have only one.", pb.ConfigRange, what),
				Subject:  cb.DefRange.Ptr(),
			}})
			continue
		}
		pb.Config = cb.Body
		pb.ConfigRange = cb.DefRange
	}
	if pb.Config == nil {
		pb.Config = emptyBody(blk.DefRange)
	}
	return pb
}

func decodeSHA256(s string) ([]byte, error) {
	// Counted in characters, as the message says ("…" is one, of three bytes).
	if n := utf8.RuneCountInString(s); n != 64 {
		if n == 1 {
			return nil, errors.New("got 1 character")
		}
		return nil, fmt.Errorf("got %d characters", n)
	}
	sum, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "encoding/hex: "))
	}
	return sum, nil
}

func (d *decoder) governance(blk *hcl.Block, g *Governance) {
	content, diags := blk.Body.Content(governanceSchema)
	d.add(diags)
	if s, attr := d.str(content.Attributes, "policy"); attr != nil {
		if !slices.Contains(Policies, s) {
			d.invalid(attr, "Invalid policy", "policy must be one of %s; got %s.", oneOf(Policies), d.quote(attr, s))
		} else {
			g.Policy = s
			g.PolicyRange = attr.Expr.Range()
		}
	}
	labels := map[string]map[string]*hcl.Block{}
	for _, rb := range content.Blocks {
		if pb := d.pluginBlock(rb, kindGovernance, labels); pb != nil {
			g.Rules = append(g.Rules, pb)
		}
	}
}

func (d *decoder) rd(blk *hcl.Block, r *RD) {
	content, diags := blk.Body.Content(rdSchema)
	d.add(diags)
	a := content.Attributes
	if v, attr := d.float(a, "alpha"); attr != nil {
		if v < 0 || v > 1 {
			d.invalid(attr, "Invalid alpha", "alpha must be between 0 and 1 inclusive; got %v.", v)
		} else {
			r.Alpha = v
		}
	}
	if v, attr := d.float(a, "epsilon"); attr != nil {
		if v <= 0 {
			d.invalid(attr, "Invalid epsilon", "epsilon must be greater than 0; got %v.", v)
		} else {
			r.Epsilon = v
		}
	}
	if v, attr := d.float(a, "tol"); attr != nil {
		if v <= 0 {
			d.invalid(attr, "Invalid tol", "tol must be greater than 0; got %v.", v)
		} else {
			r.Tol = v
		}
	}
	if v, attr := d.int64(a, "max_iter", 1, 1<<31-1); attr != nil {
		if v <= 0 || v > 1<<31-1 {
			d.invalid(attr, "Invalid max_iter", "max_iter must be a whole number from 1 to %d; got %d.", 1<<31-1, v)
		} else {
			r.MaxIter = int(v)
		}
	}
	if v, attr := d.duration(a, "timeout", false); attr != nil {
		r.Timeout = v
	}
}

func (d *decoder) api(blk *hcl.Block, api *API) {
	content, diags := blk.Body.Content(apiSchema)
	d.add(diags)
	a := content.Attributes
	if v, attr := d.int64(a, "max_body_bytes", 1, math.MaxInt64); attr != nil {
		if v <= 0 {
			d.invalid(attr, "Invalid max_body_bytes", "max_body_bytes must be greater than 0; got %d.", v)
		} else {
			api.MaxBodyBytes = v
		}
	}
	if v, attr := d.int64(a, "max_body_bytes_in_flight", 1, math.MaxInt64); attr != nil {
		if v <= 0 {
			d.invalid(attr, "Invalid max_body_bytes_in_flight", "max_body_bytes_in_flight must be greater than 0; got %d.", v)
		} else {
			api.MaxBodyBytesInFlight = v
		}
	}
	if v, attr := d.duration(a, "read_timeout", true); attr != nil {
		api.ReadTimeout = v
	}
	if v, attr := d.duration(a, "write_timeout", true); attr != nil {
		api.WriteTimeout = v
	}
	if v, attr := d.duration(a, "shutdown_timeout", false); attr != nil {
		api.ShutdownTimeout = v
	}
	if v, attr := d.duration(a, "drain_delay", true); attr != nil {
		api.DrainDelay = v
	}
	if s, attr := d.str(a, "token_file"); attr != nil {
		d.tokens(attr, s, api)
		api.tokenAttr = attr
	}
	if hosts, attr := d.stringList(a, "allowed_hosts"); attr != nil {
		for _, h := range hosts {
			name := strings.TrimPrefix(h, "*.")
			if h != "*" && (name == "" || strings.ContainsAny(name, "/:@ *") || strings.ToLower(h) != h) {
				d.invalid(attr, "Invalid allowed_hosts", "%q is not a host name: write names in lower case, without a port or scheme (\"limit.example.com\", \"*.example.com\" for its subdomains, \"*\" for any).", h)
				continue
			}
			api.AllowedHosts = append(api.AllowedHosts, h)
		}
	}
}

// tokens reads the API's token file: one token per line, "TOKEN" for an operator's,
// "TOKEN NAME" for the user NAME's or "TOKEN :metrics" for a scraper's (see Token), blank lines and lines starting with #
// ignored; each token at least MinTokenBytes of printable ASCII. Only the tokens' digests
// are kept, and no diagnostic quotes a line (a token may be in any of its fields). Every
// bad line is reported. A file others may read gets a warning.
func (d *decoder) tokens(attr *hcl.Attribute, path string, api *API) {
	if path == "" {
		d.invalid(attr, "Invalid token_file", "token_file must name a file of API tokens; leave it out to run the API without authentication.")
		return
	}
	// Non-blocking, so that a FIFO or a terminal cannot hold the daemon up.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		d.invalid(attr, "Unreadable token_file", "Cannot read the API token file: %s.", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		d.invalid(attr, "Invalid token_file", "%s is %s, not a regular file; token_file must name a file of API tokens.", path, fileKind(fi.Mode()))
		return
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		d.add(hcl.Diagnostics{{
			Severity: hcl.DiagWarning,
			Summary:  "API token file readable by others",
			Detail:   fmt.Sprintf("%s has mode %04o: anyone in its group or on the machine who can read it can use the API. Make it 0600 (chmod 600 %s).", path, fi.Mode().Perm(), path),
			Subject:  attr.Expr.Range().Ptr(),
		}})
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		d.invalid(attr, "Unreadable token_file", "Cannot read the API token file: %s.", err)
		return
	}
	var tokens []Token
	bad := false
	// seen is, by digest, the line that gave a token and its user: one token may not be an
	// operator's on one line and a user's on another (whose would a request be?).
	type origin struct {
		line int
		user string
	}
	seen := map[[32]byte]origin{}
	for i, text := range strings.Split(string(b), "\n") {
		fields := strings.Fields(text)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		// Never quote the line: a token may be in any of its fields.
		if len(fields) > 2 {
			d.invalid(attr, "Invalid API token", "Line %d of %s has %d fields: a line is TOKEN (an operator's), TOKEN NAME (the user NAME's) or TOKEN %s (a scraper's, for GET /metrics alone), and a # comment takes a line of its own.", i+1, path, len(fields), MetricsRole)
			bad = true
			continue
		}
		tok := fields[0]
		if len(tok) < MinTokenBytes || strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			d.invalid(attr, "Invalid API token", "Line %d of %s is not a token: a token is at least %d printable ASCII characters without spaces (e.g. from `openssl rand -hex 32`), then optionally a user name.", i+1, path, MinTokenBytes)
			bad = true
			continue
		}
		t := Token{Digest: sha256.Sum256([]byte(tok))}
		role := ""
		switch {
		case len(fields) == 2 && fields[1] == MetricsRole:
			t.Metrics, role = true, MetricsRole
		case len(fields) == 2 && strings.HasPrefix(fields[1], ":"):
			d.invalid(attr, "Invalid API token role", "Line %d of %s gives its token a role that is not %s (a token that reads GET /metrics alone), the only one; a user name does not start with ':' (the role is not quoted here, in case the fields are the wrong way round).", i+1, path, MetricsRole)
			bad = true
			continue
		case len(fields) == 2:
			if t.User = fields[1]; !ValidUserName(t.User) {
				d.invalid(attr, "Invalid API user name", "Line %d of %s names no valid user after its token: a user name is 1 to %d of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (the name is not quoted here, in case the fields are the wrong way round).", i+1, path, MaxUserNameBytes)
				bad = true
				continue
			}
			if ReservedUserName(t.User) {
				d.invalid(attr, "Reserved API user name", "Line %d of %s names the user %q, a name the host keeps for its own principals and agents (%s): a user called so would read like one of them in the log and the provenance. Give the user another name.", i+1, path, t.User, strings.Join(ReservedUserNames, ", "))
				bad = true
				continue
			}
			role = t.User
		}
		if prev, ok := seen[t.Digest]; ok {
			if prev.user != role {
				d.invalid(attr, "Invalid API token", "Line %d of %s repeats the token of line %d for another principal (an operator, or another user): give each user a token of its own.", i+1, path, prev.line)
				bad = true
			}
			continue
		}
		seen[t.Digest] = origin{i + 1, role}
		tokens = append(tokens, t)
	}
	if bad {
		return
	}
	if len(tokens) == 0 {
		d.invalid(attr, "Empty token_file", "%s holds no token: write one per line (e.g. `openssl rand -hex 32 > %s`).", path, path)
		return
	}
	api.TokenFile, api.Tokens = path, tokens
}

// selectStorage settles which storage block is in use: STORAGE_BACKEND first, then
// host.storage, then the only storage block, and a synthesised storage "bolt" block when
// the file declares none. It runs after applyEnv, and DATABASE_URL is passed to the
// selected block once it is known.
func (d *decoder) selectStorage(cfg *Config, storageAttr *hcl.Attribute, lookupEnv func(string) (string, bool)) {
	find := func(name string) *PluginBlock {
		for _, b := range cfg.Storage {
			if b.Name == name {
				return b
			}
		}
		return nil
	}
	// A dangling host.storage is a mistake in the file even when STORAGE_BACKEND
	// overrides it: the same file would fail without the variable.
	if storageAttr != nil && find(cfg.Host.StorageName) == nil {
		var names []string
		for _, b := range cfg.Storage {
			names = append(names, b.Name)
		}
		detail := fmt.Sprintf("Add a storage %q block, or leave host.storage out to use the only storage block or the default %q.",
			cfg.Host.StorageName, DefaultStorage)
		if len(names) > 0 {
			detail = fmt.Sprintf("Add a storage %q block, or set host.storage to one of %s.", cfg.Host.StorageName, oneOf(names))
		}
		d.add(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary: fmt.Sprintf("host.storage names %q but no storage %q block exists",
				cfg.Host.StorageName, cfg.Host.StorageName),
			Detail:      detail,
			Subject:     storageAttr.Expr.Range().Ptr(),
			Context:     hcl.RangeBetween(storageAttr.NameRange, storageAttr.Expr.Range()).Ptr(),
			Expression:  storageAttr.Expr,
			EvalContext: d.ctx,
		}})
	}

	synthesise := func(name string) {
		cfg.Storage = append(cfg.Storage, &PluginBlock{
			Kind:    base.KindStorage,
			Name:    name,
			Plugin:  "limit-" + base.KindStorage + "-" + name,
			Config:  emptyBody(hcl.Range{}),
			evalCtx: d.ctx,
		})
	}

	if backend := getenv(lookupEnv, "STORAGE_BACKEND"); backend != "" {
		name := backend
		if find(name) == nil && name == "kv" {
			name = "bolt"
		}
		if find(name) == nil && slices.Contains(StorageBackends, name) {
			// A block of another label that runs this backend's plugin (storage "main"
			// { plugin = "limit-storage-postgres" }) is the one meant, when there is one.
			var of []*PluginBlock
			for _, b := range cfg.Storage {
				if pluginBase(b.Plugin) == "limit-"+base.KindStorage+"-"+name {
					of = append(of, b)
				}
			}
			switch len(of) {
			case 1:
				name = of[0].Name
			case 0:
			default:
				var names []string
				for _, b := range of {
					names = append(names, b.Name)
				}
				d.add(hcl.Diagnostics{envDiag("STORAGE_BACKEND", backend,
					"the storage blocks %s all run the %s plugin; set STORAGE_BACKEND to the label of the one to use", oneOf(names), name)})
				return
			}
		}
		if find(name) == nil {
			if !slices.Contains(StorageBackends, backend) {
				names := slices.Clone(StorageBackends)
				for _, b := range cfg.Storage {
					if !slices.Contains(names, b.Name) {
						names = append(names, b.Name)
					}
				}
				d.add(hcl.Diagnostics{envDiag("STORAGE_BACKEND", backend,
					"it names neither a storage block of the file nor a known backend; use one of %s",
					oneOf(names))})
				return
			}
			synthesise(name)
		}
		cfg.Host.StorageName = name
	} else if storageAttr == nil {
		switch len(cfg.Storage) {
		case 0:
			synthesise(DefaultStorage)
			cfg.Host.StorageName = DefaultStorage
		case 1:
			cfg.Host.StorageName = cfg.Storage[0].Name
		default:
			var names []string
			for _, b := range cfg.Storage {
				names = append(names, b.Name)
			}
			subject := cfg.Storage[1].DeclRange
			if cfg.Host.DeclRange.Filename != "" {
				subject = cfg.Host.DeclRange
			}
			d.add(hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "host.storage is required when there are several storage blocks",
				Detail: fmt.Sprintf("The file declares the storage blocks %s; set host.storage to the one to use, or set STORAGE_BACKEND.",
					oneOf(names)),
				Subject: subject.Ptr(),
			}})
		}
	}

	if url := getenv(lookupEnv, "DATABASE_URL"); url != "" {
		if sel := cfg.SelectedStorage(); sel != nil && isPostgres(sel) {
			if _, ok := sel.Env["DATABASE_URL"]; !ok {
				if strings.TrimSpace(url) == "" {
					// Passed on, a blank URL is an empty connection string, which
					// connects to the local socket as the current user.
					d.add(hcl.Diagnostics{{
						Severity: hcl.DiagError,
						Summary:  "DATABASE_URL is empty",
						Detail:   "DATABASE_URL holds only spaces: set it to the PostgreSQL URL (postgres://user:password@host:5432/database), or unset it to use the storage block's url.",
					}})
					return
				}
				if sel.Env == nil {
					sel.Env = map[string]string{}
				}
				sel.Env["DATABASE_URL"] = url
				// A seed variable overrides the file: the block's url is left out of
				// the plugin's config, so the plugin reads DATABASE_URL.
				sel.URLFromEnv = true
			}
		}
	}
}

// isPostgres reports whether b runs the PostgreSQL storage plugin, by label or by binary.
func isPostgres(b *PluginBlock) bool {
	if b.Name == "postgres" {
		return true
	}
	return pluginBase(b.Plugin) == "limit-storage-postgres"
}

// pluginBase is the file name of a block's plugin binary, without its folder.
func pluginBase(plugin string) string {
	if i := strings.LastIndexAny(plugin, `/\`); i >= 0 {
		plugin = plugin[i+1:]
	}
	return plugin
}

// fileKind names the kind of file a mode says ("a directory", "a named pipe", …).
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// ReloadTokens reads api's token file again, as the configuration's parse read it (the
// same checks, diagnostics at the token_file attribute), and returns its tokens; on any
// error it returns none, and the caller keeps those it has. An API without a token file
// has none to reload: the choice between an open API and one with tokens is the
// configuration's, made at start.
func (api *API) ReloadTokens() ([]Token, hcl.Diagnostics) {
	if api.tokenAttr == nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No token_file",
			Detail: "The API runs without api.token_file; tokens can be given only in the configuration, with a restart."}}
	}
	d := &decoder{}
	var fresh API
	d.tokens(api.tokenAttr, api.TokenFile, &fresh)
	if d.diags.HasErrors() {
		return nil, d.diags
	}
	return fresh.Tokens, d.diags
}

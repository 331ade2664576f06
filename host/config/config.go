// Package config reads the limitd daemon's HCL configuration.
//
// A configuration file has at most one host, governance, rd and api block, and any number
// of storage and runner blocks, each labelled with a name unique within its kind. Every
// function here returns hcl.Diagnostics rather than stopping at the first problem, and
// every diagnostic about the file carries a source range, so the daemon can print all
// problems at once with file:line:column and a snippet (hcl.NewDiagnosticTextWriter).
//
// The config block of a storage, runner or governance rule block belongs to the plugin:
// it stays a raw hcl.Body until the plugin's schema is known, then DecodePluginConfig
// checks it against that schema and PluginDiagnostics maps the plugin's own complaints
// back to the file.
//
// The environment variables of the seed system override the file after it is decoded:
// API_HOST, API_PORT, STORAGE_BACKEND, DATABASE_URL, GOVERNANCE_POLICY, FGW_ALPHA and
// FGW_EPSILON. An override variable set to the empty string counts as unset. API_HOST and
// API_PORT each replace their part of host.listen; STORAGE_BACKEND selects the storage
// block by label (synthesising one for a known backend the file does not declare);
// DATABASE_URL is added to the environment of the selected storage plugin when that is
// PostgreSQL and its env does not set DATABASE_URL itself, and then overrides its config
// url (a blank one is an error); GOVERNANCE_POLICY replaces
// governance.policy; FGW_ALPHA and FGW_EPSILON replace rd.alpha and rd.epsilon.
package config

import (
	"crypto/ed25519"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/limitgraph/limit/host/diskspace"

	"github.com/limitgraph/limit/sdk/base"
)

// Defaults for every setting the file may leave out.
const (
	// DefaultListen is host.listen: loopback only.
	DefaultListen = "127.0.0.1:8080"
	// DefaultDataDir is host.data_dir, relative to the daemon's working directory.
	DefaultDataDir = "./data"
	// DefaultLogLevel is host.log_level.
	DefaultLogLevel = "info"
	// DefaultLogFormat is host.log_format.
	DefaultLogFormat = "text"
	// DefaultStorage is the label of the storage block synthesised when the file has none.
	DefaultStorage = "bolt"
	// DefaultPluginStartTimeout is host.plugin_start_timeout.
	DefaultPluginStartTimeout = 10 * time.Second
	// DefaultPluginConfigureTimeout is host.plugin_configure_timeout.
	DefaultPluginConfigureTimeout = 5 * time.Minute
	// DefaultPolicy is governance.policy.
	DefaultPolicy = "default"
	// DefaultAlpha is rd.alpha.
	DefaultAlpha = 0.5
	// DefaultEpsilon is rd.epsilon.
	DefaultEpsilon = 0.01
	// DefaultMaxIter is rd.max_iter.
	DefaultMaxIter = 200
	// DefaultTol is rd.tol.
	DefaultTol = 1e-9
	// DefaultRDTimeout is rd.timeout.
	DefaultRDTimeout = time.Minute
	// DefaultMaxBodyBytes is api.max_body_bytes: 10 MiB.
	DefaultMaxBodyBytes = 10 << 20
	// DefaultMaxBodyBytesInFlight is api.max_body_bytes_in_flight: 32 MiB.
	DefaultMaxBodyBytesInFlight = 32 << 20
	// DefaultReadTimeout is api.read_timeout.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout is api.write_timeout; it is long because answers may be large (a
	// bundle, an execution's outputs) and their clients slow.
	DefaultWriteTimeout = 5 * time.Minute
	// DefaultShutdownTimeout is api.shutdown_timeout.
	DefaultShutdownTimeout = 15 * time.Second
)

// LogLevels lists the accepted values of host.log_level, from most to least verbose.
var LogLevels = []string{"trace", "debug", "info", "warn", "error"}

// LogFormats lists the accepted values of host.log_format: hclog's text lines, or one JSON
// object a line (hclog's JSONFormat: "@level", "@message", "@timestamp", "@module" and
// the line's own keys), for a log collector.
var LogFormats = []string{"text", "json"}

// Policies lists the accepted governance policy presets.
var Policies = []string{"permissive", "default", "strict"}

// StorageBackends lists the storage names STORAGE_BACKEND accepts even when the file has
// no block with that label; "kv" is the seed's name for bolt and is accepted as an alias.
var StorageBackends = []string{"file", "kv", "bolt", "sqlite", "postgres"}

// Config is the daemon's whole configuration after defaults and environment overrides.
type Config struct {
	// Host holds the daemon's own settings.
	Host Host
	// Storage holds every storage block, in file order; SelectedStorage picks the one in
	// use. It is never empty after Parse: a storage "bolt" block is synthesised when the
	// file has none, or when STORAGE_BACKEND names a backend the file does not declare.
	Storage []*PluginBlock
	// Runners holds every runner block, in file order.
	Runners []*PluginBlock
	// Governance holds the policy preset and the governance rule plugins.
	Governance Governance
	// RD holds the defaults of the RD core's FGW solver.
	RD RD
	// API holds the HTTP server's limits and timeouts.
	API API
	// Filename is the name the file was parsed under.
	Filename string
}

// Host is the host block: the daemon's own settings.
type Host struct {
	// Listen is the HTTP API's address, host:port.
	Listen string
	// DataDir is where the daemon and its plugins keep their files.
	DataDir string
	// PluginDir is where plugin binaries are looked up; empty means the folder "plugins"
	// beside the limitd binary, which the caller resolves.
	PluginDir string
	// LogLevel is one of LogLevels.
	LogLevel string
	// LogFormat is one of LogFormats.
	LogFormat string
	// StorageName is the label of the storage block in use.
	StorageName string
	// PluginStartTimeout bounds a plugin's start and handshake.
	PluginStartTimeout time.Duration
	// PluginConfigureTimeout bounds a plugin's Configure, where its slow setup belongs.
	PluginConfigureTimeout time.Duration
	// TrustedKeys are host.trusted_keys: the provenance public keys of other hosts sharing
	// the storage whose signed checkpoints this host accepts as it accepts its own, in file
	// order, each once.
	TrustedKeys []TrustedKey
	// DeletedRetention is how long a deleted session's record and traces are kept before
	// the host purges them from storage (its merged traces stay in the shared record);
	// 0, the default, keeps them for good.
	DeletedRetention time.Duration
	// MinFreeDisk is host.min_free_disk: the free space kept on the disk that holds
	// DataDir, below which executions are refused (503) before they run. The zero value is
	// the default, the larger of 256 MiB and 2 % of the disk.
	MinFreeDisk diskspace.Reserve
	// ListenRange is the range of the listen value in the file, or the zero range when
	// the address is the default or API_HOST or API_PORT changed it.
	ListenRange hcl.Range
	// DataDirRange is the range of the data_dir value in the file, or the zero range
	// when data_dir is the default.
	DataDirRange hcl.Range
	// DeclRange is the range of the host block's header, or the zero range when the file
	// has no host block.
	DeclRange hcl.Range
}

// TrustedKey is one key of host.trusted_keys.
type TrustedKey struct {
	// Key is the Ed25519 public key.
	Key ed25519.PublicKey
	// Source is where it was read: the path of its PEM file, or "inline".
	Source string
	// Range is the range of its entry in the file.
	Range hcl.Range
}

// Governance is the governance block.
type Governance struct {
	// Policy is one of Policies.
	Policy string
	// Rules holds the governance rule plugins, in file order.
	Rules []*PluginBlock
	// PolicyRange is the range of the policy value in the file, or the zero range when the
	// policy is the default or comes from GOVERNANCE_POLICY.
	PolicyRange hcl.Range
}

// RD is the rd block: defaults of the FGW solver.
type RD struct {
	// Alpha weighs the structure term against the feature term, in [0, 1].
	Alpha float64
	// Epsilon is the entropic regularisation, > 0.
	Epsilon float64
	// Tol is the convergence tolerance, > 0.
	Tol float64
	// MaxIter bounds the solver's iterations, > 0.
	MaxIter int
	// Timeout bounds one RD request's computation, > 0: past it (or when its client goes
	// away, or the host stops) the computation stops.
	Timeout time.Duration
}

// API is the api block: limits and timeouts of the HTTP server.
type API struct {
	// MaxBodyBytes bounds a request body, > 0.
	MaxBodyBytes int64
	// MaxBodyBytesInFlight bounds the large request bodies (64 KiB and more) being
	// handled at once, > 0: a request whose body would pass it waits its turn (a body
	// larger than it waits for the whole of it).
	MaxBodyBytesInFlight int64
	// ReadTimeout bounds reading a whole request; 0 means no limit.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response, from its first byte (the API sets the
	// deadline then; the work before it has its own limits); 0 means no limit.
	WriteTimeout time.Duration
	// ShutdownTimeout bounds a graceful shutdown, > 0.
	ShutdownTimeout time.Duration
	// DrainDelay is how long, at a shutdown's start, the listener stays open answering new
	// requests 503 (readiness included) before it closes and the shutdown proper
	// (ShutdownTimeout) begins, so that a load balancer takes the host out of its pool
	// before connections are refused; 0, the default, closes it at once.
	DrainDelay time.Duration
	// TokenFile is api.token_file: when set, every request but the health check must
	// carry "Authorization: Bearer <token>" with one of the file's tokens.
	TokenFile string
	// Tokens are the tokens TokenFile holds, as digests, each with the user it names
	// (none for an operator's); empty when the API is open.
	Tokens []Token
	// tokenAttr is the token_file attribute, for the diagnostics of ReloadTokens.
	tokenAttr *hcl.Attribute
	// AllowedHosts is api.allowed_hosts: the host names (lower case; "*.example.com" for
	// its subdomains, "*" for any) a request's Host and a browser's Origin may name besides
	// IP addresses and localhost. Others are refused, against DNS rebinding and cross-site
	// requests from web pages.
	AllowedHosts []string
}

// MinTokenBytes is the shortest API token accepted: 128 bits of hex.
const MinTokenBytes = 32

// Token is one line of api.token_file: "TOKEN" (an operator's, who reaches everything),
// "TOKEN NAME" (the user NAME's, who reaches the sessions NAME owns and the shared
// record) or "TOKEN :metrics" (a scraper's, which reads GET /metrics alone: no session,
// trace or code). Several lines may name one user, so that a user's token can be
// rotated. The token itself is not kept.
type Token struct {
	// Digest is the SHA-256 digest of the token.
	Digest [32]byte
	// User is the user name the line gives; "" for an operator's token and a scraper's.
	User string
	// Metrics marks a scraper's token (MetricsRole).
	Metrics bool
}

// MetricsRole is the second field of a line of api.token_file whose token reads the
// metrics alone; no user name starts with ':', so none is taken for it.
const MetricsRole = ":metrics"

// MaxUserNameBytes bounds a user name (see ValidUserName).
const MaxUserNameBytes = 64

// ReservedUserNames are the names the host gives principals and agents of its own, which
// no user may have: "operator" and "anonymous" (the principals of the request log),
// "limitd" (the agent of the host's provenance entries) and "api" (the agent of what the
// host writes on a client's behalf). A user called so would read like one of them.
var ReservedUserNames = []string{"operator", "anonymous", "limitd", "api"}

// ReservedUserName reports whether name is one of ReservedUserNames.
func ReservedUserName(name string) bool { return slices.Contains(ReservedUserNames, name) }

// ValidUserName reports whether name can name a user in api.token_file and own sessions:
// 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit. Names are
// compared as written: a user name never needs case folding or normalising.
func ValidUserName(name string) bool {
	if name == "" || len(name) > MaxUserNameBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// PluginBlock is a storage, runner or governance rule block: which plugin binary to start
// and the plugin-owned configuration to hand it.
type PluginBlock struct {
	// Kind is base.KindStorage, base.KindRunner or base.KindGovernance.
	Kind string
	// Name is the block's label, unique within its kind.
	Name string
	// Plugin is the binary's name or path; it defaults to "limit-<kind>-<name>".
	Plugin string
	// SHA256 is the decoded pin of the binary, or nil when the block has none.
	SHA256 []byte
	// Env is the only environment the plugin process gets; nil when the block sets none.
	Env map[string]string
	// Pool is the runner block's `pool`, nil when it sets none; PoolSize applies the
	// default.
	Pool *int
	// IdleTimeout is the runner block's `idle_timeout`, nil when it sets none;
	// RunnerIdleTimeout applies the default.
	IdleTimeout *time.Duration
	// MaxProcesses is the runner block's `max_processes`: the most processes of the runner
	// its sessions hold at once; 0 sets no cap.
	MaxProcesses int
	// AllowUserNetwork is the runner block's `allow_user_network`: whether a user's token
	// (not an operator's) may create a session with allow_network that can run the
	// runner. False by default: such a session's code shares the host's network, loopback
	// services included.
	AllowUserNetwork bool
	// Config is the raw config block, never nil: an empty body when the block has no
	// config block, so it can always be decoded.
	Config hcl.Body
	// DeclRange is the range of the block's header, or the zero range for a synthesised
	// block.
	DeclRange hcl.Range
	// ConfigRange is the range of the config block's header, or DeclRange when there is
	// no config block.
	ConfigRange hcl.Range
	// SHA256Range is the range of the sha256 value, or the zero range when absent.
	SHA256Range hcl.Range
	// PluginRange is the range of the plugin value, or the zero range when absent.
	PluginRange hcl.Range
	// URLFromEnv is set on the selected PostgreSQL storage block when the host's
	// DATABASE_URL is given to the plugin: it overrides the block's config url, which
	// DecodePluginConfig leaves out.
	URLFromEnv bool

	// evalCtx evaluates expressions of the config block; it carries the env function
	// bound to the lookup Parse was given.
	evalCtx *hcl.EvalContext
	// sensitive names the attributes the plugin's schema marks sensitive, recorded by
	// DecodePluginConfig (under sensitiveMu) so that SecretLines can keep their source
	// out of diagnostics.
	sensitive []string
}

// PoolSize is how many processes of a runner the host keeps started and configured ahead
// of the sessions that take them, each handed to one session and never reused: the
// block's `pool`, else DefaultRunnerPool. 0 starts each when its session needs it. Other
// kinds of block have no pool.
func (b *PluginBlock) PoolSize() int {
	switch {
	case b.Kind != base.KindRunner:
		return 0
	case b.Pool != nil:
		return *b.Pool
	}
	return DefaultRunnerPool
}

// RunnerIdleTimeout is how long a session's process of the runner may run nothing before
// the host stops it (the session's next execution then starts a fresh one): the block's
// `idle_timeout`, else DefaultRunnerIdleTimeout. 0 keeps each until its session is
// deleted. Other kinds of block have none.
func (b *PluginBlock) RunnerIdleTimeout() time.Duration {
	switch {
	case b.Kind != base.KindRunner:
		return 0
	case b.IdleTimeout != nil:
		return *b.IdleTimeout
	}
	return DefaultRunnerIdleTimeout
}

// SelectedStorage returns the storage block in use, or nil when there is none (which
// Parse never leaves without an error diagnostic).
func (c *Config) SelectedStorage() *PluginBlock {
	if c == nil {
		return nil
	}
	name := c.Host.StorageName
	if name == "" && len(c.Storage) == 1 {
		return c.Storage[0]
	}
	for _, b := range c.Storage {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// String names the block the way it is written in the file, e.g. `storage "bolt"` or
// `governance rule "jailbreak"`; diagnostics about the block start with it.
func (b *PluginBlock) String() string {
	if b.Kind == kindGovernance {
		return "governance rule \"" + b.Name + "\""
	}
	return b.Kind + " \"" + b.Name + "\""
}

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/limitgraph/limit/sdk/base"
)

// Defaults of the config attributes; ConfigSchema publishes them to the host.
const (
	defaultMaxConns       = 16
	defaultConnectTimeout = "5s"
	// defaultStatementTimeout bounds a statement on the server (a lock wait included): a
	// storage call is a few small statements, so one that takes this long is stuck.
	defaultStatementTimeout = "10s"
	maxMaxConns             = 1000
	// urlEnv names the environment variable read when the config block has no url. The
	// host passes the seed's DATABASE_URL into this plugin's environment.
	urlEnv = "DATABASE_URL"
	// applicationName identifies the plugin's sessions in pg_stat_activity.
	applicationName = "limit-storage-postgres"
)

// rawConfig is the config block as the host sends it. Pointers tell an absent attribute
// (default applies) from one set to its zero value.
type rawConfig struct {
	URL            *string  `json:"url"`
	MaxConns       *float64 `json:"max_conns"`
	ConnectTimeout *string  `json:"connect_timeout"`
	// StatementTimeout is optional: absent means the default.
	StatementTimeout *string `json:"statement_timeout"`
}

// settings is a checked configuration. It is comparable, so a repeated Configure can tell
// whether anything changed. The URL holds the password: never log it or put it in a
// message; use addr and safeURL.
type settings struct {
	url            string
	fromEnv        bool // the URL came from DATABASE_URL, not the config block
	maxConns       int
	connectTimeout time.Duration
	// statementTimeout is the server's statement_timeout for the plugin's sessions, 0 for
	// none; a call is also bounded on the client by callTimeout.
	statementTimeout time.Duration
}

// callTimeout bounds one storage call on the client side, however it is stuck: waiting
// for a pooled connection, opening one, a statement, or a server that stopped answering
// on an open connection (a network partition, which TCP alone notices only after many
// minutes). 0 means no bound (statement_timeout = "0s").
func (s settings) callTimeout() time.Duration {
	if s.statementTimeout == 0 {
		return 0
	}
	return s.statementTimeout + s.connectTimeout
}

// configSchema describes the config block; the descriptions are the user documentation.
func configSchema() base.Schema {
	return base.Schema{Attributes: []base.Attribute{
		{
			Name: "url", Type: "string", Sensitive: true,
			Description: "PostgreSQL connection URL, e.g. \"postgres://user:password@db.example:5432/limit?sslmode=verify-full\" (or a key=value connection string). When absent, the DATABASE_URL environment variable of the plugin is used; the host sets it from its own DATABASE_URL. The tables limit_kv and limit_schema_migrations are created and migrated in the connection's default schema.",
		},
		{
			Name: "max_conns", Type: "number", Default: defaultMaxConns,
			Description: "Most connections the plugin keeps open to the server; concurrent requests beyond it wait for a free connection.",
		},
		{
			Name: "connect_timeout", Type: "string", Default: defaultConnectTimeout,
			Description: "How long to wait for the server when opening a connection, as a duration such as \"5s\". Configuration fails after it when the server cannot be reached; later, requests fail as unavailable until the server is back.",
		},
		{
			Name: "statement_timeout", Type: "string", Default: defaultStatementTimeout,
			Description: "Longest a statement may run on the server, waits for locks held by other sessions included (the server's statement_timeout), as a duration such as \"10s\"; \"0s\" sets none. A storage call is also given up on the client after statement_timeout plus connect_timeout (waiting for a free connection, or a server that stopped answering). A call that runs out fails as unavailable; a write that failed so may or may not have been applied, like any write that was not acknowledged.",
		},
	}}
}

// parseConfig decodes and checks a ConfigureRequest, with getenv reading the plugin's
// environment. It collects every problem it finds and contacts no server.
func parseConfig(req base.ConfigureRequest, getenv func(string) string) (settings, *pgxpool.Config, base.Diagnostics) {
	var raw rawConfig
	if ds := base.DecodeConfig(req.Config, &raw); ds.HasErrors() {
		return settings{}, nil, redactDiagnostics(ds, raw)
	}
	var ds base.Diagnostics
	set := settings{maxConns: defaultMaxConns}

	if raw.URL != nil && *raw.URL != "" {
		set.url = *raw.URL
	} else if v := getenv(urlEnv); v != "" {
		set.url, set.fromEnv = v, true
	}
	var pcfg *pgxpool.Config
	if set.url != "" && strings.TrimSpace(set.url) == "" {
		// pgx reads a blank string as an empty key=value connection string: the local
		// socket, as the current user.
		what := "url"
		if set.fromEnv {
			what = urlEnv
		}
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: what + " is empty",
			Detail: what + " holds only spaces: give the PostgreSQL URL, e.g. postgres://user:password@host:5432/database?sslmode=disable.",
			Path:   set.urlPath(),
		})
	} else if set.url == "" {
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: "no PostgreSQL URL",
			Detail: "Set url in the config block, e.g. url = env(\"DATABASE_URL\"), or set DATABASE_URL in the host's environment.",
			Path:   []string{"url"},
		})
	} else {
		var err error
		if pcfg, err = pgxpool.ParseConfig(set.url); err != nil {
			ds = append(ds, base.Diagnostic{
				Severity: base.SeverityError, Summary: "invalid PostgreSQL URL" + set.source(),
				Detail: redact(err.Error(), set.url) + ". Write it as postgres://user:password@host:5432/database?sslmode=disable, with special characters of the password percent-encoded.",
				Path:   set.urlPath(),
			})
		}
	}

	timeout := defaultConnectTimeout
	if raw.ConnectTimeout != nil {
		timeout = *raw.ConnectTimeout
	}
	d, err := time.ParseDuration(timeout)
	switch {
	case err != nil:
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", timeout),
			Detail: "Write a duration with a unit, such as \"5s\", \"500ms\" or \"1m\".",
			Path:   []string{"connect_timeout"},
		})
	case d < time.Millisecond:
		ds = append(ds, base.Errorf([]string{"connect_timeout"}, "connect_timeout must be at least 1ms, got %q", timeout))
	default:
		set.connectTimeout = d
	}

	stmt := defaultStatementTimeout
	if raw.StatementTimeout != nil {
		stmt = *raw.StatementTimeout
	}
	switch d, err := time.ParseDuration(stmt); {
	case err != nil:
		ds = append(ds, base.Diagnostic{
			Severity: base.SeverityError, Summary: fmt.Sprintf("invalid duration %q", stmt),
			Detail: "Write a duration with a unit, such as \"10s\" or \"1m\", or \"0s\" for no limit.",
			Path:   []string{"statement_timeout"},
		})
	case d != 0 && d < time.Millisecond:
		ds = append(ds, base.Errorf([]string{"statement_timeout"}, "statement_timeout must be 0s (no limit) or at least 1ms, got %q", stmt))
	default:
		set.statementTimeout = d
	}

	if raw.MaxConns != nil {
		n := *raw.MaxConns
		if n != math.Trunc(n) || n < 1 || n > maxMaxConns {
			ds = append(ds, base.Errorf([]string{"max_conns"}, "max_conns must be a whole number from 1 to %d, got %v", maxMaxConns, n))
		} else {
			set.maxConns = int(n)
		}
	}
	if ds.HasErrors() {
		return set, nil, ds
	}

	pcfg.MaxConns = int32(set.maxConns)
	pcfg.MinConns = 1
	if pcfg.ConnConfig.ConnectTimeout == 0 || pcfg.ConnConfig.ConnectTimeout > set.connectTimeout {
		pcfg.ConnConfig.ConnectTimeout = set.connectTimeout
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	if set.statementTimeout > 0 {
		pcfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(set.statementTimeout.Milliseconds(), 10)
	}
	// A pooled connection the server has dropped (a restart, pg_terminate_backend) is
	// noticed by a ping before use once it has idled a moment, and replaced.
	pcfg.HealthCheckPeriod = 5 * time.Second
	return set, pcfg, ds
}

// source tells where the URL came from, for messages.
func (s settings) source() string {
	if s.fromEnv {
		return " in " + urlEnv
	}
	return ""
}

// urlPath is the attribute a diagnostic about the URL points at: url when it came from
// the config block, none when it came from the environment.
func (s settings) urlPath() []string {
	if s.fromEnv {
		return nil
	}
	return []string{"url"}
}

// addr renders the servers of a parsed configuration as host:port (several joined with
// ", "), for messages; it never includes the password.
func addr(cfg *pgxpool.Config) string {
	cc := cfg.ConnConfig
	hosts := []string{net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))}
	for _, fb := range cc.Fallbacks {
		a := net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port)))
		if a != hosts[len(hosts)-1] {
			hosts = append(hosts, a)
		}
	}
	return strings.Join(hosts, ", ")
}

// userInfo matches the user:password@ part of URLs inside a message.
var userInfo = regexp.MustCompile(`(://[^:/@\s]*):[^@\s]*@`)

// passwordKV matches password=... in key=value connection strings and URL queries inside
// a message: the value alone, up to a space, the next query parameter (&) or fragment (#),
// or a quote or backtick closing what the message quoted.
var passwordKV = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&#'"` + "`" + `]+)`)

// passwordConnKV matches the password of a key=value connection string.
var passwordConnKV = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// redact removes the password of connURL from msg, wherever it appears (literally, as
// URL user info, or as password=...), so errors of the driver can be shown and logged.
func redact(msg, connURL string) string {
	// The password as written first: the patterns, which cannot know where an unquoted
	// password with a '&' in it ends, would otherwise leave its tail.
	for _, pw := range passwords(connURL) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	msg = userInfo.ReplaceAllString(msg, "$1:xxxxx@")
	msg = passwordKV.ReplaceAllString(msg, "${1}xxxxx")
	return msg
}

// passwords returns the password of connURL in the forms it may take in a message:
// as written, and percent-decoded. Very short passwords are not replaced, as they would
// garble the message; the patterns of redact still hide them.
func passwords(connURL string) []string {
	var out []string
	add := func(p string) {
		if len(p) >= 4 {
			out = append(out, p)
		}
	}
	if u, err := url.Parse(connURL); err == nil {
		if p, ok := u.User.Password(); ok && u.User != nil {
			add(p)
			add(url.QueryEscape(p))
			add(url.PathEscape(p))
		}
		if p := u.Query().Get("password"); p != "" {
			add(p)
			add(url.QueryEscape(p))
		}
	}
	if !strings.Contains(connURL, "://") {
		// A key=value connection string: an unquoted value runs to the next space.
		if m := passwordConnKV.FindStringSubmatch(connURL); m != nil {
			add(strings.Trim(m[1], "'"))
		}
	}
	return out
}

// redactDiagnostics hides the url's value in diagnostics of DecodeConfig (a url of the
// wrong type, say), which may quote it.
func redactDiagnostics(ds base.Diagnostics, raw rawConfig) base.Diagnostics {
	out := make(base.Diagnostics, len(ds))
	for i, d := range ds {
		if raw.URL != nil {
			d.Summary = redact(d.Summary, *raw.URL)
			d.Detail = redact(d.Detail, *raw.URL)
		}
		out[i] = d
	}
	return out
}

// String renders the settings for messages and logs, without the URL.
func (s settings) String() string {
	src := "url"
	if s.fromEnv {
		src = urlEnv
	}
	b, _ := json.Marshal(map[string]any{
		"url_from": src, "max_conns": s.maxConns, "connect_timeout": s.connectTimeout.String(),
		"statement_timeout": s.statementTimeout.String(),
	})
	return string(b)
}

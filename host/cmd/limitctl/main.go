// Command limitctl is the command-line client of LIMIT host and the plugin author's
// conformance checker.
//
//	limitctl [-addr URL] [-token-file FILE] [-o json] COMMAND ...   (the flags also after the command)
//	limitctl health
//	limitctl plugin check --kind KIND [--config JSON] [--env K=V]... [--data-dir DIR] [SUITE FLAGS] PATH
//	limitctl version
//
// `limitctl help` prints every command (sessions, exec, traces, governance…) and each
// conformance suite's flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/agext/levenshtein"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/client"
	"github.com/limitgraph/limit/sdk/sdktest"
)

const usage = `usage:
  limitctl [-addr URL] [-token-file FILE] [-o json] COMMAND ...
  limitctl health                             show the daemon's health and plugins
  limitctl plugin check --kind KIND [--config JSON] [--env K=V]... [--data-dir DIR] [SUITE FLAGS] PATH
                                              run the SDK conformance suite against a plugin binary
      runner suite:     --input INPUT [--expect TEXT] [--error-input INPUT] [--slow-input INPUT]
      governance suite: [--content-type TYPE] [--benign CONTENT]... [--malicious CONTENT]...
      (a value @FILE is read from FILE)
  limitctl sessions create [--name N] [--policy P] [--max-concurrency N] [--timeout-ms N] [--runner R]...
                          [--allow-network] [--owner USER]
  limitctl sessions list [--owner USER] | show ID | delete [--owner-gone] ID
  limitctl exec [--timeout-ms N] [--params JSON] SESSION RUNNER INPUT|@FILE|-
                                              run and stream the output; exits with the program's
                                              exit code when it exits non-zero, 1 when the run
                                              fails otherwise (a timeout, a refusal, the daemon),
                                              130 on Ctrl-C (the daemon then cancels it)
  limitctl traces list SESSION | show ID | flag ID FLAG SEVERITY REASON | merge ID | verify ID
  limitctl traces append [--agent A] ID KIND [DATA|@FILE|-]    append a provenance entry (DATA is JSON)
  limitctl traces merged                      list the shared record
  limitctl export (--session ID | --trace ID...) -f FILE|-   export a bundle (written whole, then renamed)
  limitctl key [-f FILE]                      the host's provenance public key (PEM) and fingerprint
  limitctl backup -f FILE|-                   an online backup for limitd -restore (an operator's
                                              token; it holds the host's private key: mode 0600)
  limitctl verify [--key FILE] BUNDLE|-       check an exported bundle offline
  limitctl governance stats | evaluate prompt|code|output TEXT|@FILE|-
  limitctl governance eval [--preset P]... [--kind prompt] [--flag jailbreak[,F]...] [--parallel N] FILE.jsonl
                                              measure the rules on lines {"text","label":"jailbreak"|"benign"}:
                                              TPR, FPR, precision, F1, confusion, ROC-AUC per preset;
                                              a text is detected when any --flag is raised
  limitctl nodes settle NODE                  record as interrupted the executions a host gone
                                              for good left running (an operator's token)
  limitctl version                            print the version

Commands that read the API print tables; add -o json for JSON. -o, -addr and -token-file go
before the command or, in those that read the API, anywhere after it (limitctl sessions
list -token-file F -o json); given after it, a flag wins over the same flag before it.

The daemon's address comes from -addr, else LIMIT_ADDR, else http://127.0.0.1:8080; a bare
HOST:PORT means http://HOST:PORT, :PORT means 127.0.0.1:PORT, and a URL ending in /v1 is
taken without it (limitctl adds the API's /v1). A daemon with api.token_file wants a token: the first in
-token-file FILE, else LIMIT_TOKEN, else the first in LIMIT_TOKEN_FILE (a flag wins over
the environment, as -addr does). limitctl help or -h prints this; COMMAND --help prints
that command's part of it.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("limitctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // its errors are printed below, with the usage
	fs.Usage = func() {}     // printed below: to stdout when asked for, else to stderr
	addr := fs.String("addr", envOr("LIMIT_ADDR", client.DefaultAddr), "daemon `URL` (http://HOST:PORT, https://..., or HOST:PORT)")
	out := fs.String("o", "table", "output: table or json (here or after the command)")
	tokenFile := fs.String("token-file", os.Getenv("LIMIT_TOKEN_FILE"), "`FILE` holding the API token (its first line that is not a # comment)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "limitctl: %v\n\n%s", err, usage)
		return 2
	}
	if *out != "table" && *out != "json" {
		fmt.Fprintf(stderr, "limitctl: -o must be table or json, got %q\n\n%s", *out, usage)
		return 2
	}
	asJSON := *out == "json"
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// The API commands find the daemon from these, or from -addr and -token-file after the
	// command, which win (see cli.parse).
	d := daemonFlags{addr: *addr, tokenFile: *tokenFile}
	fs.Visit(func(f *flag.Flag) {
		d.addrFlag = d.addrFlag || f.Name == "addr"
		d.tokenFileFlag = d.tokenFileFlag || f.Name == "token-file"
	})
	switch rest[0] {
	case "help":
		if len(rest) > 1 && !isHelpArg(rest[1]) {
			// limitctl help exec is limitctl exec --help.
			return run(ctx, append(slices.Clone(rest[1:]), "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		if helpAsked(rest[1:]) {
			fmt.Fprint(stdout, commandUsage("version"))
			return 0
		}
		vfs := flag.NewFlagSet("version", flag.ContinueOnError)
		vfs.SetOutput(io.Discard)
		o := vfs.String("o", "", "output: table or json")
		if err := vfs.Parse(rest[1:]); err != nil || vfs.NArg() > 0 || (*o != "" && *o != "json" && *o != "table") {
			fmt.Fprintf(stderr, "limitctl: version takes only -o json\n\n%s", commandUsage("version"))
			return 2
		}
		if *o == "json" || (asJSON && *o == "") {
			_ = json.NewEncoder(stdout).Encode(map[string]string{"name": "limitctl", "version": version.Version})
			return 0
		}
		fmt.Fprintln(stdout, "limitctl", version.Version)
		return 0
	case "health":
		return health(ctx, d, asJSON, rest[1:], stdout, stderr)
	case "verify", "sessions", "session", "exec", "traces", "trace", "governance", "export", "key", "nodes", "node", "backup":
		return apiCommand(ctx, d, asJSON, rest, stdout, stderr)
	case "plugin":
		if len(rest) >= 2 && isHelpArg(rest[1]) {
			fmt.Fprint(stdout, commandUsage("plugin"))
			return 0
		}
		if len(rest) < 2 || rest[1] != "check" {
			fmt.Fprint(stderr, commandUsage("plugin"))
			return 2
		}
		return pluginCheck(ctx, rest[2:], stdout, stderr)
	}
	// A short answer, not the whole usage: the likely command meant, and where they are.
	fmt.Fprintf(stderr, "limitctl: unknown command %q%s\nlimitctl help lists the commands.\n", rest[0], didYouMean(rest[0], commands))
	return 2
}

// commands are limitctl's commands, for didYouMean.
var commands = []string{"health", "plugin", "sessions", "exec", "traces", "export", "key", "backup", "verify", "governance", "nodes", "version", "help"}

// didYouMean returns "; did you mean NAME?" for the name in names nearest to given, when
// it is near enough to be a likely typo of it, else "".
func didYouMean(given string, names []string) string {
	best, bestDist := "", 3 // as HCL's own "Did you mean" and the config's suggestions
	for _, n := range names {
		if d := levenshtein.Distance(strings.ToLower(given), n, nil); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

// daemonFlags says where the daemon is and how to prove who we are to it: -addr and
// -token-file before the command (else LIMIT_ADDR and LIMIT_TOKEN_FILE), overridden by the
// same flags after it.
type daemonFlags struct {
	addr      string // -addr, else LIMIT_ADDR, else client.DefaultAddr
	addrFlag  bool   // addr came from -addr, not LIMIT_ADDR
	tokenFile string // -token-file, else LIMIT_TOKEN_FILE
	// tokenFileFlag: tokenFile came from -token-file, which wins over LIMIT_TOKEN.
	tokenFileFlag bool
}

// url returns the daemon's base URL carrying the API token (see apiToken) as its password,
// and where the token came from ("" for none), or a *setupError that says what is wrong.
func (d daemonFlags) url() (*url.URL, string, error) {
	u, err := client.ParseAddr(d.addr)
	if err != nil {
		from := "LIMIT_ADDR"
		if d.addrFlag {
			from = "-addr"
		}
		return nil, "", &setupError{fmt.Sprintf("%s %q is not a daemon address: %v; want http://HOST:PORT, https://HOST:PORT or HOST:PORT", from, d.addr, err)}
	}
	tok, source, err := apiToken(d.tokenFile, d.tokenFileFlag)
	if err != nil { // only a token file fails
		from := "LIMIT_TOKEN_FILE"
		if d.tokenFileFlag {
			from = "-token-file"
		}
		return nil, "", &setupError{fmt.Sprintf("%v (from %s)", err, from)}
	}
	if tok != "" {
		u.User = url.UserPassword("", tok) // carried to the client, never printed
	}
	return u, source, nil
}

// setupError is a bad -addr or -token-file (or their variables): exit 2, without the usage.
type setupError struct{ msg string }

func (e *setupError) Error() string { return e.msg }

// isHelpArg reports whether a command-line word asks for help.
func isHelpArg(s string) bool {
	switch s {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// helpAsked reports whether args hold a help flag, which every command answers with its
// usage. (A bare "help" is a positional argument there, such as the input of exec.)
func helpAsked(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a != "help" && isHelpArg(a) {
			return true
		}
	}
	return false
}

// commandUsage returns the lines of usage that show command cmd ("sessions", "traces",
// "plugin", …; "session" and "trace" are their aliases) with a pointer to the whole usage,
// or the whole usage when cmd is "" or shows in none of them.
func commandUsage(cmd string) string {
	switch cmd {
	case "session":
		cmd = "sessions"
	case "trace":
		cmd = "traces"
	case "node":
		cmd = "nodes"
	}
	if cmd == "" {
		return usage
	}
	var b strings.Builder
	b.WriteString("usage:\n")
	prefix := "  limitctl " + cmd + " "
	in, found := false, false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, prefix):
			in, found = true, true
		case in && strings.HasPrefix(line, "      "): // a continuation of the command's line
		default:
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if !found {
		return usage
	}
	b.WriteString("\nlimitctl help shows every command, and where the daemon's address and token come from.\n")
	return b.String()
}

// printHelp prints the usage of the command fs belongs to (cmd when fs is nil), and the
// flags of fs if it is not nil, to w.
func printHelp(w io.Writer, cmd string, fs *flag.FlagSet) {
	if fs != nil {
		cmd, _, _ = strings.Cut(fs.Name(), " ")
	}
	fmt.Fprint(w, commandUsage(cmd))
	if fs == nil {
		return
	}
	fmt.Fprintf(w, "\nflags of limitctl %s:\n", strings.TrimSpace(fs.Name()))
	// A flag without a usage text is taken but not offered (-addr of the offline verify).
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage != "" {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	shown.SetOutput(w)
	shown.PrintDefaults()
}

// unreachableError is a request that got no answer from the daemon.
type unreachableError struct {
	addr  string
	cause error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the daemon at %s: %v (is limitd running? set -addr or LIMIT_ADDR)", e.addr, e.cause)
}

func (e *unreachableError) Unwrap() error { return e.cause }

// daemonError returns err as an *unreachableError naming the daemon at u when the request
// got no HTTP answer (nothing listening, an unknown host, a timeout, a broken connection),
// and err itself otherwise: an answer the API gave, a local mistake, or an interrupt.
func daemonError(u *url.URL, err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) || errors.Is(err, context.Canceled) {
		return err
	}
	return &unreachableError{addr: u.Redacted(), cause: ue.Err}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func health(ctx context.Context, d daemonFlags, asJSON bool, args []string, stdout, stderr io.Writer) int {
	x := &cli{daemon: d, stdout: stdout, stderr: stderr, json: asJSON}
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	pos, err := x.parse(fs, args)
	var he *helpError
	if errors.As(err, &he) {
		printHelp(stdout, "", fs)
		return 0
	}
	var se *setupError
	if errors.As(err, &se) {
		fmt.Fprintf(stderr, "limitctl: %s\n", se.msg)
		return 2
	}
	if err == nil {
		err = need(pos, 0, "no arguments to health")
	}
	if err != nil {
		fmt.Fprintf(stderr, "limitctl: %v\n\n%s", err, commandUsage("health"))
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A degraded host answers 503 with the same body: the table says why.
	h, err := x.c.Health(ctx)
	if h == nil {
		fmt.Fprintln(stderr, "limitctl:", clean(daemonError(x.u, err).Error()))
		return 1
	}
	if x.json {
		if err := x.printJSON(h); err != nil {
			fmt.Fprintln(stderr, "limitctl:", err)
			return 1
		}
	} else {
		printHealth(stdout, h)
	}
	if h.Status != "ok" {
		return 1
	}
	return 0
}

// printHealth prints the daemon's health as a table.
func printHealth(stdout io.Writer, h *client.Health) {
	fmt.Fprintf(stdout, "status %s, version %s\n", clean(h.Status), clean(h.Version))
	fmt.Fprintf(stdout, "%-10s %-16s %-10s %-8s %-8s %-9s %s\n", "KIND", "NAME", "VERSION", "PID", "HEALTHY", "RESTARTS", "SESSION")
	for _, p := range h.Plugins {
		fmt.Fprintf(stdout, "%-10s %-16s %-10s %-8d %-8v %-9d %s\n", clean(p.Kind), clean(p.Name), clean(p.Version), p.PID, p.Healthy, p.Restarts, clean(p.Session))
		if p.Detail != "" {
			fmt.Fprintf(stdout, "           backend: %s\n", clean(p.Detail))
		}
		if p.LastError != "" {
			when := ""
			if t, err := time.Parse(time.RFC3339, p.LastErrorAt); err == nil {
				when = " at " + ago(t)
			}
			fmt.Fprintf(stdout, "           last error%s: %s\n", when, clean(p.LastError))
		}
	}
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// pluginCheckUsage is the first line of what a mistake on the command line of plugin check
// prints.
const pluginCheckUsage = "usage: limitctl plugin check --kind KIND [--config JSON] [--env K=V]... [--data-dir DIR] [SUITE FLAGS] PATH"

func pluginCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plugin check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: to stdout when asked for, else to stderr
	kind := fs.String("kind", "", "plugin kind: "+strings.Join(base.Kinds, ", "))
	cfg := fs.String("config", "{}", "plugin configuration as a JSON object")
	dataDir := fs.String("data-dir", "", "data directory handed to the plugin (default: a new temporary directory, removed afterwards)")
	var env multiFlag
	fs.Var(&env, "env", "`K=V` environment variable for the plugin (repeatable); the plugin gets no other")
	suiteFlags := registerCheckFlags(fs)
	// Accept flags before and after the path.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(stdout, "", fs)
				return 0
			}
			fmt.Fprintln(stderr, pluginCheckUsage)
			fs.PrintDefaults()
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		if afterDashDash(args, fs.NArg()) {
			paths = append(paths, fs.Args()...)
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) != 1 || *kind == "" {
		fmt.Fprintln(stderr, pluginCheckUsage)
		return 2
	}
	var cfgObject map[string]json.RawMessage
	if err := json.Unmarshal([]byte(*cfg), &cfgObject); err != nil || cfgObject == nil {
		fmt.Fprintln(stderr, "limitctl: --config must be a JSON object, such as '{\"path\": \"data.db\"}'")
		return 2
	}
	if !strings.ContainsRune(paths[0], '/') {
		// As the host takes a plugin path: never looked up in $PATH.
		paths[0] = "./" + paths[0]
	}
	for _, kv := range env {
		if !strings.Contains(kv, "=") {
			fmt.Fprintf(stderr, "limitctl: --env %q is not K=V\n", kv)
			return 2
		}
	}
	dir := *dataDir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			fmt.Fprintln(stderr, "limitctl: --data-dir:", err)
			return 1
		}
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "limitctl-check-")
		if err != nil {
			fmt.Fprintln(stderr, "limitctl:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	report := func(name string, err error, elapsed time.Duration) {
		if errors.Is(err, sdktest.ErrNotApplicable) {
			fmt.Fprintf(stdout, "n/a   %-40s %8s  %s\n", name, elapsed.Round(time.Millisecond), clean(err.Error()))
			return
		}
		if err != nil {
			fmt.Fprintf(stdout, "FAIL  %-40s %8s  %s\n", name, elapsed.Round(time.Millisecond), clean(err.Error()))
			return
		}
		fmt.Fprintf(stdout, "ok    %-40s %8s\n", name, elapsed.Round(time.Millisecond))
	}
	opts := []sdktest.LaunchOption{sdktest.WithConfigWarnings(func(ds base.Diagnostics) {
		for _, d := range ds {
			fmt.Fprintf(stderr, "limitctl: warning: config: %s\n", clean(d.Error()))
		}
	})}
	header := func(p base.Plugin) {
		info := p.PluginInfo()
		fmt.Fprintf(stdout, "checking %s plugin %s (%s %s)\n", *kind, paths[0], clean(info.Name), clean(info.Version))
	}
	passed, failed, skipped, handled, err := checkOtherKind(ctx, *kind, paths[0], env, []byte(*cfg), dir, suiteFlags(), opts, header, report)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "limitctl:", err)
		if errors.Is(err, errCheckUsage) {
			return 2
		}
		return 1
	case handled:
	case *kind == base.KindStorage:
		s, cleanup, err := sdktest.LaunchStorage(ctx, paths[0], env, []byte(*cfg), dir, opts...)
		if err != nil {
			fmt.Fprintf(stderr, "limitctl: %v\n", err)
			return 1
		}
		defer cleanup()
		header(s)
		passed, failed = sdktest.CheckStorage(ctx, s, report)
	default:
		err := fmt.Errorf("no conformance suite for kind %q", *kind)
		if !contains(base.Kinds, *kind) {
			err = fmt.Errorf("unknown kind %q (want one of %s)", *kind, strings.Join(base.Kinds, ", "))
		}
		fmt.Fprintln(stderr, "limitctl:", err)
		return 2
	}
	if skipped > 0 {
		fmt.Fprintf(stdout, "%d passed, %d failed, %d not applicable\n", passed, failed, skipped)
	} else {
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// apiToken returns the API token: the first line of file that is not blank or a #
// comment when file came from -token-file (fromFlag), else LIMIT_TOKEN, else that line of
// file (LIMIT_TOKEN_FILE), else "". It also returns where the token came from, or would
// have ("-token-file FILE", "LIMIT_TOKEN", "LIMIT_TOKEN_FILE FILE"), "" for no token.
func apiToken(file string, fromFlag bool) (tok, source string, err error) {
	if tok := strings.TrimSpace(os.Getenv("LIMIT_TOKEN")); tok != "" && !fromFlag {
		return tok, "LIMIT_TOKEN", nil
	}
	if file == "" {
		return "", "", nil
	}
	source = "LIMIT_TOKEN_FILE " + file
	if fromFlag {
		source = "-token-file " + file
	}
	tok, err = client.ReadTokenFile(file)
	return tok, source, err
}

// newClient returns a client of the daemon at u, with the token u carries (see daemon in
// run) as its bearer token and u without it as its address.
func newClient(u *url.URL) *client.Client {
	tok := ""
	if u.User != nil {
		tok, _ = u.User.Password()
		v := *u
		v.User = nil
		u = &v
	}
	c := client.New(u.String())
	c.Token = tok
	return c
}

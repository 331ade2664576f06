package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/client"
)

// cli holds what every API command shares.
type cli struct {
	c      *client.Client // set by parse, from daemon
	u      *url.URL       // the daemon's address, for messages
	stdout io.Writer
	stderr io.Writer
	json   bool
	// daemon is where to find the daemon, as given before the command; parse applies
	// -addr and -token-file given after it, then connects c.
	daemon daemonFlags
	// offline is set for a command that needs no daemon (verify): a bad -addr is no error.
	offline bool
	// tokenSource is where the token sent came from, "" when none was (see apiToken).
	tokenSource string
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// helpError is a -h or --help on a command line: the usage goes to stdout (exit 0), with
// the command's flags if fs is not nil.
type helpError struct{ fs *flag.FlagSet }

func (e *helpError) Error() string { return "help requested" }

// apiCommand runs the commands that talk to the daemon at u (and verify, which does not).
func apiCommand(ctx context.Context, d daemonFlags, asJSON bool, args []string, stdout, stderr io.Writer) int {
	x := &cli{u: &url.URL{}, stdout: stdout, stderr: stderr, json: asJSON, daemon: d, offline: args[0] == "verify"}
	err := x.dispatch(ctx, args)
	var he *helpError
	var ue *usageError
	var se *setupError
	var ae *client.Error
	var fe *execFailedError
	var ie *interruptedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ie):
		fmt.Fprintf(stderr, "limitctl: %s\n", clean(ie.Error()))
		return 130
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "limitctl: interrupted")
		return 130
	case errors.As(err, &fe):
		fmt.Fprintf(stderr, "limitctl: %s\n", clean(fe.Error()))
		return fe.code()
	case errors.As(err, &he):
		printHelp(stdout, args[0], he.fs)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "limitctl: %s\n\n%s", ue.msg, commandUsage(args[0]))
		return 2
	case errors.As(err, &se):
		fmt.Fprintf(stderr, "limitctl: %s\n", se.msg)
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "limitctl: %s", clean(ae.Error()))
		if ae.RequestID != "" {
			fmt.Fprintf(stderr, " (request %s)", clean(ae.RequestID))
		}
		fmt.Fprintln(stderr)
		printProblemExtra(stderr, ae)
		if ae.Status == http.StatusUnauthorized {
			if x.tokenSource == "" {
				fmt.Fprintln(stderr, "  limitctl sent no token: give the daemon's with -token-file FILE, LIMIT_TOKEN or LIMIT_TOKEN_FILE")
			} else {
				fmt.Fprintf(stderr, "  the daemon refused the token from %s\n", x.tokenSource)
			}
		}
	default:
		// Also errors that quote what the daemon answered, or what a bundle holds.
		fmt.Fprintln(stderr, "limitctl:", clean(daemonError(x.u, err).Error()))
	}
	return 1
}

// parse parses a subcommand's flags (accepting them before and after positional
// arguments) and the global -o, -addr and -token-file, which override those before the
// command; then, unless the command is offline, it connects x.c to the daemon. A -h or
// --help returns a *helpError, a bad address or token file a *setupError.
func (x *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	out := fs.String("o", "", "output: table or json")
	addrUsage := "daemon `URL` (http://HOST:PORT, https://..., or HOST:PORT); overrides -addr before the command and LIMIT_ADDR"
	tokenUsage := "`FILE` holding the API token; overrides -token-file before the command, LIMIT_TOKEN and LIMIT_TOKEN_FILE"
	if x.offline {
		// An offline command (verify) reads no daemon: it takes the flags, ignored, as
		// every command does, but its help does not offer them (see printHelp).
		addrUsage, tokenUsage = "", ""
	}
	addr := fs.String("addr", "", addrUsage)
	tokenFile := fs.String("token-file", "", tokenUsage)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpError{fs}
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			break
		}
		if afterDashDash(args, fs.NArg()) {
			pos = append(pos, fs.Args()...) // all of them, even those that look like flags
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch *out {
	case "json":
		x.json = true
	case "table":
		x.json = false
	case "": // as before the command (-o there), else a table
	default:
		return nil, usagef("-o must be table or json, got %q", *out)
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "addr":
			x.daemon.addr, x.daemon.addrFlag = *addr, true
		case "token-file":
			x.daemon.tokenFile, x.daemon.tokenFileFlag = *tokenFile, true
		}
	})
	if x.offline {
		return pos, nil
	}
	u, source, err := x.daemon.url()
	if err != nil {
		return nil, err
	}
	x.tokenSource = source
	x.c = newClient(u)
	v := *u
	v.User = nil // messages name the address, never the token
	x.u = &v
	return pos, nil
}

// afterDashDash reports whether a FlagSet's Parse of args, which left its last n
// arguments, stopped at a "--": the arguments after it are positional, whatever they
// look like. (A "--" that was the value of a flag before it is taken for one too.)
func afterDashDash(args []string, n int) bool {
	i := len(args) - n - 1
	return i >= 0 && args[i] == "--"
}

// globalFlag reports whether arg is -o, -addr or -token-file (one dash or two), and
// whether its value is the next argument rather than after "=".
func globalFlag(arg string) (ok, valueNext bool) {
	if !strings.HasPrefix(arg, "-") {
		return false, false
	}
	name, _, hasValue := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
	switch name {
	case "o", "addr", "token-file":
		return true, !hasValue
	}
	return false, false
}

// hoistGlobalFlags moves -o, -addr and -token-file given between a command and its
// subcommand (limitctl sessions -addr URL list) after the subcommand, where parse reads them.
func hoistGlobalFlags(args []string) []string {
	i := 1
	for i < len(args) {
		ok, valueNext := globalFlag(args[i])
		if !ok {
			break
		}
		i++
		if valueNext && i < len(args) {
			i++
		}
	}
	flags := args[1:i]
	if len(flags) == 0 {
		return args
	}
	sub, rest := "", args[i:] // no subcommand after the flags: limitctl sessions -o json lists
	if len(rest) > 0 {
		sub, rest = rest[0], rest[1:]
	}
	out := append([]string{args[0], sub}, flags...)
	return append(out, rest...)
}

// plural returns "1 trace" or "2 traces".
func plural[N int | int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(int64(n), 10) + " " + many
}

// subcommandError is the usage error for a missing or unknown subcommand of cmd.
func subcommandError(cmd, sub, subs string) error {
	if sub == "" {
		return usagef("%s needs a subcommand: %s", cmd, subs)
	}
	return usagef("unknown %s command %q%s (want %s)", cmd, sub, didYouMean(sub, strings.Split(subs, ", ")), subs)
}

// need checks that a command got exactly n positional arguments, what describing them;
// one given too many names the arguments it does not take (a second bundle, a stray word,
// a glob that matched more files than meant).
func need(pos []string, n int, what string) error {
	switch {
	case len(pos) < n:
		return usagef("expected %s", what)
	case len(pos) > n:
		extra := pos[n:]
		word := "argument"
		if len(extra) > 1 {
			word = "arguments"
		}
		shown := make([]string, 0, 3)
		for _, a := range extra[:min(len(extra), 3)] {
			shown = append(shown, strconv.Quote(a))
		}
		list := strings.Join(shown, ", ")
		if more := len(extra) - len(shown); more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		return usagef("expected %s; extra %s %s", what, word, list)
	}
	return nil
}

func (x *cli) printJSON(v any) error {
	enc := json.NewEncoder(x.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (x *cli) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(x.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		// A cell's tab or newline would make two cells, or two rows, of it.
		fmt.Fprintln(tw, strings.Join(cleanAll(r), "\t"))
	}
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// compactJSON returns raw JSON on one line, or as it is when it is not JSON.
func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func (x *cli) dispatch(ctx context.Context, args []string) error {
	cmd, sub := args[0], ""
	switch cmd {
	case "sessions", "session", "traces", "trace", "governance", "nodes", "node":
		args = hoistGlobalFlags(args)
	}
	if len(args) > 1 {
		sub = args[1]
	}
	switch cmd {
	case "sessions", "session", "traces", "trace", "governance", "nodes", "node":
		if isHelpArg(sub) {
			return &helpError{}
		}
	}
	switch cmd {
	case "sessions", "session":
		return x.sessions(ctx, sub, args[min(2, len(args)):])
	case "exec":
		return x.exec(ctx, args[1:])
	case "traces", "trace":
		return x.traces(ctx, sub, args[min(2, len(args)):])
	case "verify":
		return x.verify(args[1:])
	case "export":
		return x.export(ctx, args[1:])
	case "key":
		return x.key(ctx, args[1:])
	case "backup":
		return x.backup(ctx, args[1:])
	case "governance":
		return x.governance(ctx, sub, args[min(2, len(args)):])
	case "nodes", "node":
		return x.nodes(ctx, sub, args[min(2, len(args)):])
	}
	return usagef("unknown command %q", cmd)
}

func (x *cli) sessionRows(ss []client.Session) [][]string {
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		owner := s.Owner
		if owner == "" {
			owner = "-" // the operators'
		}
		rows = append(rows, []string{s.ID, s.Name, owner, s.State, s.Policy, strconv.Itoa(s.MaxConcurrency),
			strconv.FormatBool(s.AllowNetwork), strings.Join(s.Runners, ","), ago(s.CreatedAt)})
	}
	return rows
}

const sessionHeader = "ID\tNAME\tOWNER\tSTATE\tPOLICY\tCONCURRENCY\tNETWORK\tRUNNERS\tCREATED"

func (x *cli) showSessions(ss ...client.Session) error {
	if x.json {
		if len(ss) == 1 {
			return x.printJSON(ss[0])
		}
		return x.printJSON(ss)
	}
	x.table(sessionHeader, x.sessionRows(ss))
	return nil
}

func (x *cli) sessions(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet("sessions "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		name := fs.String("name", "", "session name")
		policy := fs.String("policy", "", "governance policy: permissive, default, strict")
		conc := fs.Int("max-concurrency", 0, "simultaneous executions")
		network := fs.Bool("allow-network", false, "let the session's code use the network")
		timeout := fs.Uint64("timeout-ms", 0, "default execution timeout")
		owner := fs.String("owner", "", "the user the session is for (an operator's token; a user's token creates its own user's)")
		var runners multi
		fs.Var(&runners, "runner", "runner the session may use (repeatable; default all)")
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 0, "no arguments to sessions create"); err != nil {
			return err
		}
		// An unset flag leaves the daemon's default; one given must be in range (0 would
		// otherwise be dropped from the request and silently mean the default).
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "max-concurrency" })
		if given && (*conc < 1 || *conc > session.MaxMaxConcurrency) {
			return usagef("--max-concurrency must be between 1 and %d, got %d", session.MaxMaxConcurrency, *conc)
		}
		s, err := x.c.CreateSession(ctx, client.CreateSessionRequest{
			Name: *name, Policy: *policy, MaxConcurrency: *conc, AllowNetwork: *network, Runners: runners,
			Limits: client.Limits{TimeoutMS: *timeout}, Owner: *owner,
		})
		if err != nil {
			return err
		}
		return x.showSessions(*s)
	case "list", "":
		all := fs.Bool("all", false, "follow every page")
		per := fs.Int("per-page", 50, "sessions per page")
		token := fs.String("next-token", "", "page token")
		owner := fs.String("owner", "", "only the sessions of this user (operators' tokens; a user's token reaches its own alone)")
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 0, "no arguments to sessions list"); err != nil {
			return err
		}
		var ss []client.Session
		for {
			l, err := x.c.ListSessionsOf(ctx, *owner, *per, *token)
			if err != nil {
				return err
			}
			ss = append(ss, l.Sessions...)
			if *all && l.NextToken != "" && l.NextToken == *token {
				return fmt.Errorf("sessions list --all: the host answered page token %q again; stopped after %d sessions", *token, len(ss))
			}
			*token = l.NextToken
			if !*all || l.NextToken == "" {
				break
			}
		}
		if x.json {
			// The API's own page shape, as traces list prints it (an array of one
			// session must not turn into an object).
			if ss == nil {
				ss = []client.Session{}
			}
			return x.printJSON(client.SessionList{Sessions: ss, NextToken: *token})
		}
		if err := x.showSessions(ss...); err != nil {
			return err
		}
		if *token != "" {
			fmt.Fprintf(x.stdout, "more: --next-token %s\n", clean(*token))
		}
		return nil
	case "show", "delete":
		ownerGone := false
		if sub == "delete" {
			fs.BoolVar(&ownerGone, "owner-gone", false, "delete a session another host runs, that host gone for good (an operator's token)")
		}
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a session id"); err != nil {
			return err
		}
		var s *client.Session
		switch {
		case sub == "show":
			s, err = x.c.GetSession(ctx, pos[0])
		case ownerGone:
			s, err = x.c.DeleteSessionOwnerGone(ctx, pos[0])
		default:
			s, err = x.c.DeleteSession(ctx, pos[0])
		}
		if err != nil {
			return err
		}
		return x.showSessions(*s)
	}
	return subcommandError("sessions", sub, "create, list, show, delete")
}

// nodes acts on the hosts (nodes) that share the daemon's storage.
func (x *cli) nodes(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet("nodes "+sub, flag.ContinueOnError)
	switch sub {
	case "settle":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a node id (a session's owner_node, a running execution's node)"); err != nil {
			return err
		}
		res, err := x.c.SettleNode(ctx, pos[0])
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(res)
		}
		fmt.Fprintf(x.stdout, "node %s: %d execution(s) recorded as interrupted\n", clean(res.Node), res.Settled)
		return nil
	}
	return subcommandError("nodes", sub, "settle")
}

// readInput returns the text arg stands for: stdin for "-", the contents of FILE for
// "@FILE", the argument without its first "@" for "@@...", else the argument itself. Text
// that is not valid UTF-8 is refused (a usage error naming the first bad byte's offset):
// the API carries JSON strings, into which it would go with each bad byte replaced by
// U+FFFD, running or evaluating something other than what was given.
func readInput(arg string) (string, error) {
	var text, from string
	switch {
	case arg == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return "", err
		}
		text, from = string(b), "stdin"
	case strings.HasPrefix(arg, "@@"):
		text, from = arg[1:], "the argument"
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return "", err
		}
		text, from = string(b), arg[1:]
	default:
		text, from = arg, "the argument"
	}
	if i := invalidUTF8(text); i >= 0 {
		return "", usagef("%s is not valid UTF-8: byte 0x%02x at offset %d (convert it first, e.g. iconv -f latin1 -t utf-8)", from, text[i], i)
	}
	return text, nil
}

// invalidUTF8 returns the offset of the first byte of s that is not part of valid UTF-8,
// or -1.
func invalidUTF8(s string) int {
	if utf8.ValidString(s) {
		return -1
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return -1
}

func (x *cli) exec(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	timeout := fs.Uint64("timeout-ms", 0, "execution timeout")
	params := fs.String("params", "", "runner parameters as a JSON object")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 3, "SESSION RUNNER INPUT (INPUT may be @FILE or - for stdin)"); err != nil {
		return err
	}
	input, err := readInput(pos[2])
	if err != nil {
		return err
	}
	req := client.ExecuteRequest{Runner: pos[1], Input: input, TimeoutMS: *timeout}
	if *params != "" {
		if err := json.Unmarshal([]byte(*params), &req.Params); err != nil {
			return usagef("--params is not a JSON object: %v", err)
		}
	}
	if x.json {
		res, err := x.c.Execute(ctx, pos[0], req)
		if err != nil && ctx.Err() != nil {
			return &interruptedError{msg: fmt.Sprintf("interrupted: the daemon cancels the execution, so it ends as cancelled; its trace shows it (limitctl traces list %s)", pos[0])}
		}
		if err != nil {
			return err
		}
		if err := x.printJSON(res); err != nil {
			return err
		}
		return execOutcome(res)
	}
	// What was streamed to stdout: program output, or a model's answer as tokens. A
	// result's output is printed after it unless the tokens were that answer already (a
	// Python runner's output is its last expression's value, not its stdout).
	var streamed strings.Builder
	tokens := false
	res, err := x.c.ExecuteStream(ctx, pos[0], req, func(ev client.Event) {
		if ev.Kind == "stderr" {
			fmt.Fprint(x.stderr, ev.Data)
			return
		}
		tokens = tokens || ev.Kind == "token"
		fmt.Fprint(x.stdout, ev.Data)
		streamed.WriteString(ev.Data)
	})
	if ctx.Err() != nil {
		// Ctrl-C: limitctl left, not the daemon, which cancels an execution whose client
		// leaves.
		return &interruptedError{msg: fmt.Sprintf("interrupted: the daemon cancels the execution, so it ends as cancelled; its trace shows it (limitctl traces list %s)", pos[0])}
	}
	if errors.Is(err, client.ErrStreamLost) {
		return fmt.Errorf("the connection to the daemon at %s was lost during the execution: its outcome is unknown; once the daemon is back, its trace shows it (limitctl traces list %s) (%w)", x.u.Redacted(), pos[0], err)
	}
	if err != nil {
		return err
	}
	out := streamed.String()
	if out != "" && !strings.HasSuffix(out, "\n") {
		fmt.Fprintln(x.stdout)
	}
	if res.Output != "" && !tokens && res.Output != out && res.Output != res.Stdout {
		fmt.Fprintln(x.stdout, res.Output)
	}
	fmt.Fprintf(x.stderr, "-- %s exit=%d %dms trace=%s", clean(res.Status), res.ExitCode, res.DurationMS, clean(res.TraceID))
	if res.Truncated {
		fmt.Fprint(x.stderr, " truncated") // the output is cut at the runner's max_output_bytes
	}
	if res.StateReset {
		fmt.Fprint(x.stderr, " state_reset")
	}
	printFlags(x.stderr, res.Flags)
	if res.Error != "" {
		// A runner's error can be of several lines (Python's traceback): each line is
		// cleaned, and printed as a line of its own.
		fmt.Fprintln(x.stderr, "error:", cleanLines(strings.TrimRight(res.Error, "\n")))
	}
	return execOutcome(res)
}

// interruptedError is a command stopped by Ctrl-C; limitctl exits 130, as a shell does
// for a program ended by SIGINT.
type interruptedError struct{ msg string }

func (e *interruptedError) Error() string { return e.msg }

// execFailedError is an execution that ran and did not end ok: limitctl exits with the
// program's exit code when it exited non-zero (1 to 255), else 1.
type execFailedError struct {
	status   string
	exitCode int
}

func (e *execFailedError) Error() string {
	if e.exitCode != 0 {
		return fmt.Sprintf("execution ended with status %s, exit code %d", e.status, e.exitCode)
	}
	return "execution ended with status " + e.status
}

// code is limitctl's exit status for the failed execution.
func (e *execFailedError) code() int {
	if e.exitCode >= 1 && e.exitCode <= 255 {
		return e.exitCode
	}
	return 1
}

// execOutcome returns nil for an execution that ended ok, else an *execFailedError.
func execOutcome(res *client.ExecutionResult) error {
	if res.Status == "ok" {
		return nil
	}
	return &execFailedError{status: res.Status, exitCode: res.ExitCode}
}

// printFlags ends a status line with the flags, " flag=jailbreak:8 flag=unsafe:3", and
// then gives each flag that says where and how sure a line of its own.
func printFlags(w io.Writer, flags []client.Flag) {
	for _, f := range flags {
		fmt.Fprintf(w, " flag=%s:%d", clean(f.Flag), f.Severity)
	}
	fmt.Fprintln(w)
	for _, f := range flags {
		if d := flagDetail(f); d != "" {
			fmt.Fprintf(w, "   %s:%d %s: %s\n", clean(f.Flag), f.Severity, clean(f.RuleID), clean(d))
		}
	}
}

// printProblemExtra prints what a problem the API answered says beyond its detail: the
// trace it is about and the flags, as exec's status line shows them (an execution the
// policy blocked, a merge refused), and each reason (a merge refused) on a line of its
// own.
func printProblemExtra(w io.Writer, ae *client.Error) {
	var traceID string
	var flags []client.Flag
	var reasons []string
	_ = json.Unmarshal(ae.Extra["trace_id"], &traceID)
	rawFlags, hasFlags := ae.Extra["flags"]
	if hasFlags && json.Unmarshal(rawFlags, &flags) != nil {
		fmt.Fprintf(w, "  flags: %s\n", clean(string(rawFlags)))
		flags = nil
	}
	if traceID != "" || len(flags) > 0 {
		fmt.Fprint(w, "--")
		if traceID != "" {
			fmt.Fprintf(w, " trace=%s", clean(traceID))
		}
		printFlags(w, flags)
	}
	if raw, ok := ae.Extra["reasons"]; ok {
		if json.Unmarshal(raw, &reasons) != nil {
			fmt.Fprintf(w, "  reasons: %s\n", clean(string(raw)))
		}
		for _, r := range reasons {
			fmt.Fprintf(w, "  reason: %s\n", clean(r))
		}
	}
}

// jsonError says why text is not JSON, where, and what is there (a few dozen bytes of
// it, not all of a large file), or returns "" when it is JSON.
func jsonError(text string) string {
	if json.Valid([]byte(text)) {
		return ""
	}
	var v json.RawMessage
	err := json.Unmarshal([]byte(text), &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Sprint(err)
	}
	off := int(se.Offset)
	return fmt.Sprintf("%v at byte %d, near %s", se, off, excerpt(text, off))
}

// excerpt quotes up to 40 bytes of s either side of offset off (as Go does, escaping what
// is not printable), "..." marking what is left out.
func excerpt(s string, off int) string {
	off = min(max(off, 0), len(s))
	start, end := max(off-40, 0), min(off+40, len(s))
	for start > 0 && !utf8.RuneStart(s[start]) {
		start--
	}
	for end < len(s) && !utf8.RuneStart(s[end]) {
		end++
	}
	out := strconv.Quote(s[start:end])
	if start > 0 {
		out = "..." + out
	}
	if end < len(s) {
		out += "..."
	}
	return out
}

// flagDetail describes where a rule's flag points and how sure the rule was, as "pre,
// line 4:7, bytes 12-40, score 0.93", or "" for a flag that says none of it.
func flagDetail(f client.Flag) string {
	var parts []string
	if f.Stage != "" {
		parts = append(parts, f.Stage)
	}
	if f.Location != nil {
		if l := f.Location.String(); l != "" {
			parts = append(parts, l)
		}
	}
	if f.Score != 0 {
		parts = append(parts, "score "+strconv.FormatFloat(f.Score, 'g', 3, 64))
	}
	return strings.Join(parts, ", ")
}

// where is the location column of a flag table: "line 4:7, bytes 12-40", or "-".
func where(f client.Flag) string {
	if f.Location == nil || f.Location.String() == "" {
		return "-"
	}
	return f.Location.String()
}

func flagNames(fs []client.Flag) string {
	if len(fs) == 0 {
		return "-"
	}
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = fmt.Sprintf("%s:%d", f.Flag, f.Severity)
	}
	return strings.Join(out, ",")
}

func (x *cli) traces(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet("traces "+sub, flag.ContinueOnError)
	switch sub {
	case "list":
		per := fs.Int("per-page", 50, "traces per page")
		token := fs.String("next-token", "", "page token")
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a session id"); err != nil {
			return err
		}
		l, err := x.c.ListTraces(ctx, pos[0], *per, *token)
		if err != nil {
			return err
		}
		return x.showTraces(l)
	case "merged":
		per := fs.Int("per-page", 50, "traces per page")
		token := fs.String("next-token", "", "page token")
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 0, "no arguments to traces merged"); err != nil {
			return err
		}
		l, err := x.c.ListMerged(ctx, *per, *token)
		if err != nil {
			return err
		}
		return x.showTraces(l)
	case "append":
		agent := fs.String("agent", "", "who made the entry (default: the token's principal, operator or user:NAME)")
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 3 {
			return need(pos, 3, "ID KIND [DATA|@FILE|-] (DATA is JSON)")
		}
		if len(pos) != 2 && len(pos) != 3 {
			return usagef("expected ID KIND [DATA|@FILE|-] (DATA is JSON)")
		}
		var data json.RawMessage
		if len(pos) == 3 {
			text, err := readInput(pos[2])
			if err != nil {
				return err
			}
			if err := jsonError(text); err != "" {
				return usagef("the entry's data must be JSON (quote a string: '\"text\"'): %s", err)
			}
			data = json.RawMessage(text)
		}
		e, err := x.c.AppendProvenance(ctx, pos[0], pos[1], *agent, data)
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(e)
		}
		fmt.Fprintf(x.stdout, "entry %d (%s) appended to %s, hash %s\n", e.Index, clean(e.Kind), clean(pos[0]), clean(e.Hash))
		return nil
	case "show":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a trace id"); err != nil {
			return err
		}
		t, err := x.c.GetTrace(ctx, pos[0])
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(t)
		}
		fmt.Fprintf(x.stdout, "trace    %s\nsession  %s\nkind     %s\nstatus   %s\ncreated  %s\nflags    %s\ndata     %s\n\n",
			clean(t.ID), clean(t.SessionID), clean(t.Kind), clean(t.Status), ago(t.CreatedAt), clean(flagNames(t.Flags)), clean(compactJSON(t.Data)))
		if len(t.Flags) > 0 {
			rows := make([][]string, 0, len(t.Flags))
			for _, f := range t.Flags {
				stage, score := "-", "-"
				if f.Stage != "" {
					stage = f.Stage
				}
				if f.Score != 0 {
					score = strconv.FormatFloat(f.Score, 'g', 3, 64)
				}
				rows = append(rows, []string{f.Flag, strconv.Itoa(f.Severity), f.RuleID, stage, where(f), score, f.Reason})
			}
			x.table("FLAG\tSEVERITY\tRULE\tSTAGE\tWHERE\tSCORE\tREASON", rows)
			fmt.Fprintln(x.stdout)
		}
		rows := [][]string{}
		for _, e := range t.Provenance {
			rows = append(rows, []string{strconv.FormatInt(e.Index, 10), e.Kind, e.Agent, ago(e.Timestamp), e.Hash[:16]})
		}
		x.table("INDEX\tKIND\tAGENT\tTIME\tHASH", rows)
		return nil
	case "flag":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 4, "ID FLAG SEVERITY REASON"); err != nil {
			return err
		}
		sev, err := strconv.Atoi(pos[2])
		if err != nil {
			return usagef("severity must be a number from 1 to 10, got %q", pos[2])
		}
		t, err := x.c.Flag(ctx, client.FlagRequest{TraceID: pos[0], Flag: pos[1], Severity: sev, Reason: pos[3]})
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(t)
		}
		fmt.Fprintf(x.stdout, "trace %s is %s, flags %s\n", clean(t.ID), clean(t.Status), clean(flagNames(t.Flags)))
		return nil
	case "merge":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a trace id"); err != nil {
			return err
		}
		m, err := x.c.Merge(ctx, pos[0])
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(m)
		}
		fmt.Fprintf(x.stdout, "trace %s merged into the shared record\n", clean(m.TraceID))
		return nil
	case "verify":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 1, "a trace id"); err != nil {
			return err
		}
		v, err := x.c.VerifyProvenance(ctx, pos[0])
		if err != nil {
			return err
		}
		if x.json {
			if err := x.printJSON(v); err != nil {
				return err
			}
		} else if v.Valid {
			fmt.Fprintf(x.stdout, "valid: %d entries, head %s\n", v.Length, clean(v.Head))
		}
		if !v.Valid {
			return fmt.Errorf("provenance of %s does not verify: %s", pos[0], v.Error)
		}
		return nil
	}
	return subcommandError("traces", sub, "list, show, append, flag, merge, merged, verify")
}

// showTraces prints a page of traces as a table (or JSON).
func (x *cli) showTraces(l *client.TraceList) error {
	if x.json {
		return x.printJSON(l)
	}
	rows := [][]string{}
	for _, t := range l.Traces {
		rows = append(rows, []string{t.ID, t.SessionID, t.Kind, t.Status, strconv.FormatInt(t.Length, 10), flagNames(t.Flags), ago(t.CreatedAt)})
	}
	x.table("ID\tSESSION\tKIND\tSTATUS\tENTRIES\tFLAGS\tCREATED", rows)
	for _, id := range l.Damaged {
		fmt.Fprintf(x.stdout, "damaged: %s (left out; limitctl traces verify %s says what is wrong)\n", clean(id), clean(id))
	}
	if l.NextToken != "" {
		fmt.Fprintf(x.stdout, "more: --next-token %s\n", clean(l.NextToken))
	}
	return nil
}

func (x *cli) verify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	keyFile := fs.String("key", "", "public key file (PEM) the bundle must be signed with")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 1, "a bundle file (- for stdin)"); err != nil {
		return err
	}
	var opts trace.VerifyOptions
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		k, err := trace.ParsePublicKeyFile(b)
		if err != nil {
			return fmt.Errorf("--key %s: %w", *keyFile, err)
		}
		opts.TrustedKey = ed25519.PublicKey(k)
	}
	var in io.Reader = os.Stdin
	name := pos[0]
	if name == "-" {
		name = "stdin" // e.g. curl …/export | limitctl verify -
	} else {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	sum, err := trace.VerifyBundle(in, opts)
	if err != nil {
		return fmt.Errorf("%s does not verify: %w", name, err)
	}
	trusted := opts.TrustedKey != nil
	fps := make([]string, len(sum.SignerFingerprints))
	for i, fp := range sum.SignerFingerprints {
		fps[i] = clean(fp)
	}
	word := "key"
	if len(fps) > 1 {
		word = "keys"
	}
	if !trusted {
		// Anyone can make a bundle that is intact under a key of their own: without --key,
		// "valid" says nothing about who signed it. Say so on stderr, so -o json stays JSON.
		fmt.Fprintf(x.stderr, "warning: no --key given: the bundle is intact under the key it carries itself (%s), which was trusted on first use; anyone can make such a bundle with a key of their own. Compare that fingerprint with the host's (GET /v1/provenance/key) or pass --key host.pem.\n", clean(sum.KeyFingerprint))
		if len(fps) > 0 {
			// The other keys are vouched for by the bundle's key alone: one of an
			// unverified key lists whichever keys its maker chose (a real host's, whose
			// checkpoints of a trace it kept), so their fingerprints prove nothing here.
			fmt.Fprintf(x.stderr, "warning: the bundle also lists %s %s as signing some checkpoints: UNVERIFIED, as only the bundle's own key, itself unchecked, lists them; a forged bundle may name any host's key, so a familiar fingerprint here proves nothing. Pass --key with the exporting host's key to check them.\n", word, strings.Join(fps, ", "))
		}
	}
	if x.json {
		return x.printJSON(struct {
			trace.BundleSummary
			// KeyTrusted tells whether the key was given with --key (else trusted on first
			// use, and so are the signer keys the bundle lists).
			KeyTrusted bool `json:"key_trusted"`
		}{sum, trusted})
	}
	how := "a trusted key (--key)"
	if !trusted {
		how = "the key the bundle carries, NOT checked against a trusted key"
	}
	if len(fps) > 0 {
		if trusted {
			// Checkpoints of other hosts' keys, which the exporting host trusted: its key,
			// checked with --key, vouches for them in the signed header.
			how += fmt.Sprintf("; checkpoints also signed by %s %s, which the bundle's key vouches for", word, strings.Join(fps, ", "))
		} else {
			how += fmt.Sprintf("; some checkpoints signed by %d other %s the bundle lists, unverified", len(fps), word)
		}
	}
	fmt.Fprintf(x.stdout, "%s: valid — %s, %s, %s, created %s, signed by key %s, %s\n",
		clean(name), plural(sum.Traces, "trace", "traces"), plural(sum.Entries, "provenance entry", "provenance entries"),
		plural(sum.Checkpoints, "signed checkpoint", "signed checkpoints"), ago(sum.CreatedAt), clean(sum.KeyFingerprint), how)
	return nil
}

func (x *cli) governance(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet("governance "+sub, flag.ContinueOnError)
	switch sub {
	case "stats":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 0, "no arguments to governance stats"); err != nil {
			return err
		}
		st, err := x.c.GovernanceStats(ctx)
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(st)
		}
		ids := make([]string, 0, len(st.Sessions))
		for id := range st.Sessions {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		row := func(name string, s client.Stats) []string {
			return []string{name, strconv.Itoa(s.Flags), byFlag(s.ByFlag), bySeverity(s.BySeverity), strconv.Itoa(s.Quarantined),
				strconv.Itoa(s.ExecutionsBlocked), strconv.Itoa(s.MergesAllowed), strconv.Itoa(s.MergesRefused), strconv.Itoa(s.MergesWithdrawn)}
		}
		rows := [][]string{row("overall", st.Overall)}
		for _, id := range ids {
			rows = append(rows, row(id, st.Sessions[id]))
		}
		x.table("SESSION\tFLAGS\tBY FLAG\tBY SEVERITY\tQUARANTINED\tBLOCKED\tMERGED\tREFUSED\tWITHDRAWN", rows)
		return nil
	case "evaluate":
		pos, err := x.parse(fs, args)
		if err != nil {
			return err
		}
		if err := need(pos, 2, "KIND (prompt, code, output) and TEXT (or @FILE, -)"); err != nil {
			return err
		}
		// The API's kinds, checked before any input is read or request made.
		if kinds := []string{"prompt", "code", "output"}; !slices.Contains(kinds, pos[0]) {
			return usagef("KIND must be prompt, code or output, got %q%s", pos[0], didYouMean(pos[0], kinds))
		}
		text, err := readInput(pos[1])
		if err != nil {
			return err
		}
		ev, err := x.c.Evaluate(ctx, pos[0], text)
		if err != nil {
			return err
		}
		if x.json {
			return x.printJSON(ev)
		}
		if len(ev.Findings) == 0 && len(ev.Errors) == 0 {
			var read []string
			for _, r := range ev.Rules {
				read = append(read, r.Plugin)
			}
			if len(read) == 0 {
				fmt.Fprintf(x.stdout, "no findings: no configured rule reads %s texts\n", pos[0])
			} else {
				fmt.Fprintf(x.stdout, "no findings: read by %s, flagged by none\n", clean(strings.Join(read, ", ")))
			}
		} else if len(ev.Findings) > 0 {
			rows := [][]string{}
			for _, f := range ev.Findings {
				rows = append(rows, []string{f.Flag, strconv.Itoa(f.Severity), f.RuleID, where(f), f.Reason})
			}
			x.table("FLAG\tSEVERITY\tRULE\tWHERE\tREASON", rows)
		}
		for _, e := range ev.Errors {
			fmt.Fprintln(x.stderr, "rule error:", clean(e))
		}
		return nil
	case "eval":
		return x.governanceEval(ctx, args)
	}
	return subcommandError("governance", sub, "stats, evaluate, eval")
}

// bySeverity renders counts by severity ("1".."10") in order of severity, "7=2 10=1".
func bySeverity(m map[string]int) string {
	return counts(m, func(a, b string) bool {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		if errA != nil || errB != nil {
			return a < b
		}
		return x < y
	})
}

// byFlag renders counts by flag in the flags' order, "anomaly=1 jailbreak=2".
func byFlag(m map[string]int) string {
	return counts(m, func(a, b string) bool { return a < b })
}

// counts renders m as "k=v" pairs in the order of less, "-" when empty.
func counts(m map[string]int, less func(a, b string) bool) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// export writes a bundle of a session's traces, or of the traces named, to a file (or to
// stdout with -f -). The file appears only once the whole bundle is written.
func (x *cli) export(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	sessionID := fs.String("session", "", "export this session's traces")
	var traces multi
	fs.Var(&traces, "trace", "export this trace (repeatable)")
	file := fs.String("f", "", "write the bundle to `FILE` (- for stdout)")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 0, "no arguments to export (use --session or --trace, and -f FILE)"); err != nil {
		return err
	}
	if (*sessionID == "") == (len(traces) == 0) {
		return usagef("export needs --session ID or --trace ID (one or more), not both")
	}
	if *file == "" {
		return usagef("export needs -f FILE (or -f - for stdout)")
	}
	req := client.ExportRequest{SessionID: *sessionID, TraceIDs: traces}
	if *file == "-" {
		return x.c.Export(ctx, req, x.stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*file), "."+filepath.Base(*file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := x.c.Export(ctx, req, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	fi, err := tmp.Stat()
	if err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *file); err != nil {
		return err
	}
	if x.json {
		return x.printJSON(map[string]any{"file": *file, "bytes": fi.Size()})
	}
	fmt.Fprintf(x.stdout, "wrote %s (%d bytes); check it with: limitctl verify --key host.pem %s\n", *file, fi.Size(), *file)
	return nil
}

// backup downloads an online backup to a file (mode 0600: it holds the host's private key)
// that appears only once the whole archive is written, or to stdout with -f -.
func (x *cli) backup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	file := fs.String("f", "", "write the archive to `FILE` (- for stdout)")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 0, "no arguments to backup (use -f FILE)"); err != nil {
		return err
	}
	if *file == "" {
		return usagef("backup needs -f FILE (or -f - for stdout)")
	}
	if *file == "-" {
		_, _, err := x.c.Backup(ctx, x.stdout)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*file), "."+filepath.Base(*file)+".*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write %s: %w", *file, err)
	}
	fmt.Fprintln(x.stderr, "the host copies its storage first; the download begins once it has")
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	b, n, err := x.c.Backup(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *file); err != nil {
		return err
	}
	if x.json {
		return x.printJSON(map[string]any{"file": *file, "bytes": n, "keys": b.Keys})
	}
	fmt.Fprintf(x.stdout, "wrote %s (%d bytes, %d storage keys); restore it with: limitd -config FILE -restore %s\n", *file, n, b.Keys, *file)
	return nil
}

// key prints the host's provenance public key (PEM), or writes it to -f FILE, with its
// fingerprint: what `limitctl verify --key` trusts.
func (x *cli) key(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	file := fs.String("f", "", "write the PEM to `FILE` instead of stdout")
	pos, err := x.parse(fs, args)
	if err != nil {
		return err
	}
	if err := need(pos, 0, "no arguments to key"); err != nil {
		return err
	}
	k, err := x.c.ProvenanceKey(ctx)
	if err != nil {
		return err
	}
	if *file == "" {
		if x.json {
			return x.printJSON(k)
		}
		fmt.Fprint(x.stdout, cleanLines(k.PublicKeyPEM))
		fmt.Fprintf(x.stderr, "fingerprint %s\n", clean(k.Fingerprint))
		return nil
	}
	if err := os.WriteFile(*file, []byte(k.PublicKeyPEM), 0o644); err != nil {
		return err
	}
	if x.json {
		return x.printJSON(struct {
			client.ProvenanceKey
			File string `json:"file"`
		}{*k, *file})
	}
	fmt.Fprintf(x.stdout, "wrote %s, key fingerprint %s\n", *file, clean(k.Fingerprint))
	return nil
}

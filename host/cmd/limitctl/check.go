package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/sdktest"
)

// errCheckUsage marks a mistake on the command line of `plugin check` (exit status 2),
// as opposed to a plugin that cannot be started (exit status 1).
var errCheckUsage = errors.New("usage")

// listSep joins the values of a repeatable flag in the flags map of checkOtherKind. A
// command-line argument cannot contain a NUL byte, so the join is unambiguous.
const listSep = "\x00"

// Flags of the runner and governance suites, by the name they have on the command line
// and in the flags map of checkOtherKind.
var (
	runnerCheckFlags     = []string{"input", "expect", "error-input", "slow-input"}
	governanceCheckFlags = []string{"benign", "malicious", "content-type"}
)

// registerCheckFlags registers the flags of the runner and governance suites on fs (the
// FlagSet of `plugin check`) and returns a function that, once fs is parsed, returns their
// values as the flags map of checkOtherKind: only flags that were given, repeated values
// joined by listSep.
func registerCheckFlags(fs *flag.FlagSet) func() map[string]string {
	values := map[string]*multiFlag{}
	for name, usage := range map[string]string{
		"input":       "runner: an `INPUT` the runner executes successfully (required for --kind runner)",
		"expect":      "runner: `TEXT` the execution of --input prints or returns (default: any output)",
		"error-input": "runner: an `INPUT` whose execution fails (optional)",
		"slow-input":  "runner: an `INPUT` that runs for ten seconds or more, for the timeout and cancel cases (optional)",
		"benign":      "governance: `CONTENT` that must raise no finding (repeatable)",
		"malicious":   "governance: `CONTENT` that must raise at least one finding (repeatable)",
		"content-type": "governance: the content `TYPE` of --benign and --malicious, such as code/python for a rule that reads Python " +
			"(default what the host sends for a runner without an input:TYPE capability: text/plain before execution, text/output after)",
	} {
		v := new(multiFlag)
		values[name] = v
		fs.Var(v, name, usage+"; @FILE reads it from a file, @@ starts it with a literal @")
	}
	return func() map[string]string {
		out := map[string]string{}
		for name, v := range values {
			if len(*v) > 0 {
				out[name] = strings.Join(*v, listSep)
			}
		}
		return out
	}
}

// checkOtherKind runs the conformance suite of a runner or governance plugin, the kinds
// whose suites need inputs from the command line (flags, from registerCheckFlags). It
// reports each case through report; a case that does not apply without an optional input
// comes with an error wrapping sdktest.ErrNotApplicable and counts as skipped.
//
// For another kind it returns handled false, and an error if flags of these suites were
// given, since they would be ignored. An error wrapping errCheckUsage is a command-line
// mistake; any other error means the plugin could not be started.
//
// Once the plugin has started and accepted its configuration, started is called with it
// (for the header line), and opts apply to that first launch (the warnings of its
// configuration are reported once, not for every case's process).
func checkOtherKind(ctx context.Context, kind, path string, env []string, cfg []byte, dataDir string, flags map[string]string, opts []sdktest.LaunchOption, started func(base.Plugin), report func(name string, err error, elapsed time.Duration)) (passed, failed, skipped int, handled bool, err error) {
	own := map[string][]string{base.KindRunner: runnerCheckFlags, base.KindGovernance: governanceCheckFlags}
	for name := range flags {
		if !contains(own[kind], name) {
			return 0, 0, 0, false, fmt.Errorf("%w: --%s applies to --kind %s only, not to --kind %s", errCheckUsage, name, kindOf(name), kind)
		}
	}
	values := map[string][]string{}
	for name, v := range flags {
		for _, s := range strings.Split(v, listSep) {
			text, err := flagText(name, s)
			if err != nil {
				return 0, 0, 0, true, err
			}
			values[name] = append(values[name], text)
		}
	}
	one := func(name string) string {
		if vs := values[name]; len(vs) > 0 {
			return vs[len(vs)-1]
		}
		return ""
	}
	switch kind {
	case base.KindRunner:
		rc := sdktest.RunnerSuiteConfig{Input: one("input"), Expect: one("expect"), ErrorInput: one("error-input"), SlowInput: one("slow-input")}
		if rc.Input == "" {
			return 0, 0, 0, true, fmt.Errorf("%w: --kind runner needs --input, an input the runner executes successfully", errCheckUsage)
		}
		// Start one process first, so a binary that is not a working runner plugin gives
		// one clear error instead of failing every case with it.
		r, stop, err := sdktest.LaunchRunner(ctx, path, env, cfg, dataDir, opts...)
		if err != nil {
			return 0, 0, 0, true, err
		}
		started(r)
		stop()
		passed, failed, skipped = sdktest.CheckRunner(ctx, sdktest.LaunchRunnerFunc(ctx, path, env, cfg, dataDir), rc, report)
		return passed, failed, skipped, true, nil
	case base.KindGovernance:
		gc := sdktest.GovernanceSuiteConfig{Benign: values["benign"], Malicious: values["malicious"], ContentType: one("content-type")}
		r, stop, err := sdktest.LaunchGovernance(ctx, path, env, cfg, dataDir, opts...)
		if err != nil {
			return 0, 0, 0, true, err
		}
		defer stop()
		started(r)
		passed, failed, skipped = sdktest.CheckGovernance(ctx, r, gc, report)
		return passed, failed, skipped, true, nil
	}
	return 0, 0, 0, false, nil
}

// kindOf names the kind whose suite the flag belongs to.
func kindOf(flagName string) string {
	if contains(governanceCheckFlags, flagName) {
		return base.KindGovernance
	}
	return base.KindRunner
}

// flagText returns the text a flag value stands for: the contents of FILE for "@FILE", the
// value without its first "@" for "@@...", else the value itself.
func flagText(name, v string) (string, error) {
	switch {
	case strings.HasPrefix(v, "@@"):
		return v[1:], nil
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("%w: --%s: %v", errCheckUsage, name, err)
		}
		return string(b), nil
	}
	return v, nil
}

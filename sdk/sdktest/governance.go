package sdktest

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
)

// DefaultGovernanceCallTimeout bounds each evaluation the governance suite makes, unless
// GovernanceSuiteConfig.CallTimeout says otherwise: rules run on the path of every
// execution, so a slow rule is a broken rule.
const DefaultGovernanceCallTimeout = 5 * time.Second

// GovernanceSuiteConfig gives the governance suite contents the plugin under test must
// pass and contents it must flag; what counts as malicious depends on the rules, so the
// author supplies them.
type GovernanceSuiteConfig struct {
	// Benign contents must yield no finding at any stage the plugin's rules run at.
	Benign []string
	// Malicious contents must each yield at least one finding at a stage the plugin's
	// rules run at.
	Malicious []string
	// ContentType of the evaluated contents; empty means what the host sends for a runner
	// without an input:TYPE capability: "text/plain" at the pre stage and "text/output" at
	// the post stage.
	ContentType string
	// CallTimeout bounds every evaluation; zero means DefaultGovernanceCallTimeout.
	CallTimeout time.Duration
}

// callTimeout returns the configured call timeout or its default.
func (c GovernanceSuiteConfig) callTimeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return DefaultGovernanceCallTimeout
}

// GovernanceCase is one conformance check of a governance plugin. Rules hold no state
// between evaluations, so every case runs against the same plugin.
type GovernanceCase struct {
	// Name identifies the case, e.g. "deterministic"; it is also a subtest name.
	Name string
	// NotApplicable, when not empty, tells why the case does not apply under the suite's
	// configuration; the case is then reported as not applicable and Run is not called.
	NotApplicable string
	// Run performs the check against r. It returns nil when the plugin behaves as the
	// protocol says, or an error that tells what it did instead.
	Run func(ctx context.Context, r governance.Rule) error
}

// RunGovernance runs every case of GovernanceCases(cfg) against r, a configured governance
// plugin (in-process, or a client from LaunchGovernance), each as a subtest. Cases that do
// not apply under cfg are skipped with the reason.
func RunGovernance(t *testing.T, r governance.Rule, cfg GovernanceSuiteConfig) {
	t.Helper()
	if r == nil {
		t.Fatal("sdktest.RunGovernance: rule is nil")
	}
	for _, c := range GovernanceCases(cfg) {
		t.Run(c.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), CaseTimeout)
			defer cancel()
			err := runGovernanceCase(ctx, c, r)
			if errors.Is(err, ErrNotApplicable) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// CheckGovernance runs every case of GovernanceCases(cfg) against r, one after the other,
// and calls report (if not nil) after each with the case's name, its error (nil when it
// passed; wrapping ErrNotApplicable when it does not apply) and how long it took. It
// returns how many cases passed, failed and were not applicable. It is what a CLI such as
// `limitctl plugin check --kind governance` calls.
func CheckGovernance(ctx context.Context, r governance.Rule, cfg GovernanceSuiteConfig, report func(name string, err error, elapsed time.Duration)) (passed, failed, skipped int) {
	for _, c := range GovernanceCases(cfg) {
		start := time.Now()
		var err error
		if r == nil {
			err = errors.New("rule is nil")
		} else {
			cctx, cancel := context.WithTimeout(ctx, CaseTimeout)
			err = runGovernanceCase(cctx, c, r)
			cancel()
		}
		switch {
		case errors.Is(err, ErrNotApplicable):
			skipped++
		case err != nil:
			failed++
		default:
			passed++
		}
		if report != nil {
			report(c.Name, err, time.Since(start))
		}
	}
	return passed, failed, skipped
}

// runGovernanceCase runs c and turns a panic in it into a failure of that case alone.
func runGovernanceCase(ctx context.Context, c GovernanceCase, r governance.Rule) (err error) {
	if c.NotApplicable != "" {
		return fmt.Errorf("%w: %s", ErrNotApplicable, c.NotApplicable)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("case panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return c.Run(ctx, r)
}

// LaunchGovernance starts the governance plugin binary at path the way the host does
// (mutual TLS, only env as its environment), checks that it is a governance plugin, and
// configures it with configJSON (nil means "{}"; checked and given its defaults as the
// host does, see ApplySchema) and dataDir. It returns the plugin's
// client, which implements governance.Rule, and a function that stops the plugin process;
// call it when done.
func LaunchGovernance(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (governance.Rule, func(), error) {
	return launch[governance.Rule](ctx, base.KindGovernance, governance.PluginSet(), path, env, configJSON, dataDir, opts...)
}

// LaunchGovernanceGRPC is LaunchGovernance with a client that evaluates over gRPC and
// ignores the plugin's fast path, so a suite or a benchmark can check both transports.
func LaunchGovernanceGRPC(ctx context.Context, path string, env []string, configJSON []byte, dataDir string, opts ...LaunchOption) (governance.Rule, func(), error) {
	return launch[governance.Rule](ctx, base.KindGovernance, governance.PluginSetGRPCOnly(), path, env, configJSON, dataDir, opts...)
}

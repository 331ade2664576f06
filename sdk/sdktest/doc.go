// Package sdktest is the conformance kit for LIMIT plugins. A plugin author runs it against
// an implementation in-process or against a built binary; the host's `limitctl plugin check`
// runs the same cases and prints each one passed or failed.
//
// For storage backends:
//
//	func TestConformance(t *testing.T) {
//		sdktest.RunStorage(t, mybackend.New())
//	}
//
// or, through the plugin boundary, against the binary itself:
//
//	s, stop, err := sdktest.LaunchStorage(ctx, "./storage-mine", nil, []byte(`{}`), t.TempDir())
//	if err != nil {
//		t.Fatal(err)
//	}
//	defer stop()
//	sdktest.RunStorage(t, s)
//
// Cases return errors instead of taking a *testing.T, so a CLI can run them too
// (CheckStorage). Every run of a case writes only to namespaces of its own, named after the
// case with a random suffix, and deletes what it wrote when it ends, so the suite can run
// against a store that holds other data.
//
// Runners and governance rules have suites of their own (RunRunner, CheckRunner,
// LaunchRunner; RunGovernance, CheckGovernance, LaunchGovernance). What an input means
// differs between plugins, so the author supplies the inputs: RunnerSuiteConfig names one
// that succeeds with the text it prints, and optionally one that fails and one that runs
// long enough to time out and be cancelled; GovernanceSuiteConfig lists benign contents
// that must pass and malicious ones that must be flagged. A runner process serves exactly
// one session, so every runner case gets a fresh runner from a function the author passes
// (LaunchRunnerFunc starts a fresh plugin process per case):
//
//	sdktest.RunRunner(t, sdktest.LaunchRunnerFunc(ctx, "./runner-mine", nil, nil, t.TempDir()),
//		sdktest.RunnerSuiteConfig{Input: `print("hi")`, Expect: "hi", SlowInput: "import time; time.sleep(60)"})
//
// A case that does not apply without an optional input is skipped under go test, and
// reported by the Check functions with an error wrapping ErrNotApplicable and counted
// apart from those that passed or failed.
//
// BenchStorage and CompareStorage measure latency percentiles and throughput of the common
// operations, the latter side by side for an in-process backend and the same backend behind
// the plugin boundary.
package sdktest

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
// BenchStorage and CompareStorage measure latency percentiles and throughput of the common
// operations, the latter side by side for an in-process backend and the same backend behind
// the plugin boundary.
package sdktest

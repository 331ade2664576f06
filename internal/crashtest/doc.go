// Package crashtest proves that a storage plugin never loses an acknowledged write: a
// writer process writes through the real plugin binary from several goroutines and prints
// an acknowledgement line for every write only after the plugin returned it; the harness
// kills the writer or the plugin with SIGKILL at random moments, hundreds of times,
// restarts the writer, and has it check the store against every acknowledgement before
// it writes again.
//
// Every value carries its own key, its batch and a SHA-256 checksum, so the check finds
// lost acknowledged writes, torn or misplaced values, batches visible in part (a batch
// mixes puts and a delete), undone deletes and counters that went back (overwrites and
// compare-and-swap). Writes that were in flight at the kill may or may not be there; if
// they are, they must be intact and whole.
//
// Each round writes only keys under its own prefix ("r00042/"), so the check after round
// r scans that prefix; every FullEvery rounds, and at the end, the whole namespace is
// checked, and the last check runs in the harness's own process.
//
// DiskFull fills a small file system (MountTmpfs) through the plugin and checks the
// error is storage.ErrNoSpace, that nothing acknowledged is damaged, also across a
// SIGKILL, and that writes work again once space is freed.
//
// The writer is any executable that calls WriterMain when the environment variable
// WriterEnv is set; tests re-run their own binary (see crashtest_test.go).
package crashtest

# LIMIT host with the SQLite storage backend: one database file (pure Go SQLite, WAL mode,
# synchronous=FULL) under ./data. Start it with `limitd -config configs/sqlite.hcl`, or
# keep your own file and set STORAGE_BACKEND=sqlite.
#
# This file sets up storage only: it has no runner and no governance rule, so sessions
# here run nothing. For the default host (Python runner, jailbreak, codesafety and anomaly
# rules) on this backend, start configs/default.hcl with STORAGE_BACKEND=sqlite instead, or
# copy its runner and governance blocks here.

host {
  listen   = "127.0.0.1:8080"
  data_dir = "./data"
}

storage "sqlite" {
  config {
    # Relative to the plugin's data directory; the write-ahead log lives beside it.
    path = "limit.sqlite"
    # How long a write waits when another process holds the database's write lock.
    busy_timeout = "5s"
    # Most concurrent writes committed together in one transaction (one fsync).
    max_batch = 1000
    # Connections serving reads beside the single writer.
    readers = 4
  }
}

# LIMIT host with the SQLite storage backend: one database file (pure Go SQLite, WAL mode,
# synchronous=FULL) under ./data. Start it with `limitd -config configs/sqlite.hcl`, or
# keep your own file and set STORAGE_BACKEND=sqlite.

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

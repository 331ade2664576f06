# LIMIT host with the PostgreSQL storage backend. The connection URL comes from
# DATABASE_URL, e.g.
#
#   DATABASE_URL='postgres://limit:secret@db.example:5432/limit?sslmode=verify-full' \
#     limitd -config configs/postgres.hcl
#
# The plugin creates its tables (limit_kv, limit_schema_migrations) and migrates them at
# start; several limitd nodes can share one database. Or keep your own file and set
# STORAGE_BACKEND=postgres and DATABASE_URL.
#
# This file sets up storage only: it has no runner and no governance rule, so sessions
# here run nothing. For the default host (Python runner, jailbreak, codesafety and anomaly
# rules) on this backend, start configs/default.hcl with STORAGE_BACKEND=postgres instead, or
# copy its runner and governance blocks here.

host {
  listen   = "127.0.0.1:8080"
  data_dir = "./data"
}

storage "postgres" {
  config {
    # The URL is a secret: take it from the environment rather than writing it here.
    # Without url, the plugin reads DATABASE_URL, which the host passes to it.
    # url = env("DATABASE_URL")
    max_conns       = 16
    connect_timeout = "5s"
    # A statement stuck longer (a lock held by another session, say) fails, and the API
    # answers 503, instead of waiting as long as the lock is held.
    statement_timeout = "10s"
  }
}

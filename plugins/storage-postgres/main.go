// Command limit-storage-postgres is the LIMIT host's PostgreSQL storage plugin
// (github.com/jackc/pgx/v5 with a pgxpool connection pool). It creates and migrates its
// schema at start (versions recorded in limit_schema_migrations), keeps keys in bytea
// columns so they sort bytewise, sends batches as one pipelined implicit transaction, and
// reconnects by itself when the server comes back after a restart.
//
// The connection URL comes from the config block's url or, when that is absent, from the
// DATABASE_URL environment variable the host passes to it.
//
// Build it as `go build -o limit-storage-postgres ./plugins/storage-postgres`; the host
// starts it, it is not meant to be run by hand.
package main

import (
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

func main() {
	s := newStore()
	s.log = base.NewPluginLogger("storage.postgres")
	storage.Serve(s)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/internal/opened"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

var (
	errNotConfigured = fmt.Errorf("postgres: storage not configured (Configure must succeed first): %w", storage.ErrUnavailable)
	errClosed        = fmt.Errorf("postgres: storage closed: %w", storage.ErrUnavailable)
)

// casAttempts bounds the retries of a compare-and-swap whose conditional write did not
// apply but whose follow-up read found the expected state (another writer changed the key
// and changed it back in between).
const casAttempts = 16

// store is the PostgreSQL storage backend: one table keyed by (namespace, key), both
// bytea, which compares bytewise (memcmp, then length) whatever the database's collation.
// Every write is one statement or one pipelined batch, committed with the server's
// synchronous_commit (on by default: durable when acknowledged); the server groups the
// WAL flushes of concurrent commits.
type store struct {
	log    hclog.Logger
	getenv func(string) string

	conn opened.Slot[settings, conn]
}

// conn is a configured pool and what messages say about it.
type conn struct {
	pool *pgxpool.Pool
	set  settings
	addr string // host:port of the server, for messages
}

func newStore() *store {
	return &store{log: hclog.NewNullLogger(), getenv: os.Getenv, conn: opened.Slot[settings, conn]{
		Name: "postgres", ErrNotConfigured: errNotConfigured, ErrClosed: errClosed,
	}}
}

// PluginInfo implements base.Plugin.
func (s *store) PluginInfo() base.Info {
	return base.Info{
		Name:         "postgres",
		Kind:         base.KindStorage,
		Version:      version.Version,
		Capabilities: []string{"batch", "cas", "scan", "durable", "shared", storage.CapBatchNamespaces},
		Description:  "PostgreSQL (pgx) storage: one table, bytea keys in byte order, pipelined atomic batches; several hosts can share one database.",
	}
}

// ConfigSchema implements base.Plugin.
func (s *store) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin. Without ValidateOnly it connects, fails with a
// diagnostic naming the server's host:port (never the password) when the server cannot
// be reached, and creates or migrates the schema. A second Configure with the same
// settings is a no-op, with different ones an error.
func (s *store) Configure(ctx context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, pcfg, ds := parseConfig(req, s.getenv)
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	return append(ds, s.conn.Configure(set, func() (*conn, base.Diagnostics) { return s.connect(ctx, set, pcfg) })...)
}

// connect opens the pool, checks that the server answers, and migrates the schema.
func (s *store) connect(ctx context.Context, set settings, pcfg *pgxpool.Config) (*conn, base.Diagnostics) {
	c := &conn{set: set, addr: addr(pcfg)}
	who := fmt.Sprintf("database %q as user %q", pcfg.ConnConfig.Database, pcfg.ConnConfig.User)
	pool, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), pcfg)
	if err != nil {
		return nil, base.Diagnostics{{
			Severity: base.SeverityError, Summary: "cannot set up the PostgreSQL connection pool" + set.source(),
			Detail: redact(err.Error(), set.url), Path: set.urlPath(),
		}}
	}
	pctx, cancel := context.WithTimeout(ctx, set.connectTimeout+set.connectTimeout/2)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, base.Diagnostics{{
			Severity: base.SeverityError,
			Summary:  fmt.Sprintf("cannot connect to PostgreSQL at %s (%s)", c.addr, who),
			Detail: redact(err.Error(), set.url) + ". Check that the server runs and accepts connections there, and the url" +
				set.source() + " (host, port, user, password, database, sslmode).",
			Path: set.urlPath(),
		}}
	}
	from, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, base.Diagnostics{{
			Severity: base.SeverityError,
			Summary:  fmt.Sprintf("cannot prepare the schema in PostgreSQL at %s (%s)", c.addr, who),
			Detail:   redact(err.Error(), set.url) + ". The user needs the right to create tables in the database's default schema.",
			Path:     set.urlPath(),
		}}
	}
	c.pool = pool
	s.log.Info("connected", "server", c.addr, "database", pcfg.ConnConfig.Database, "user", pcfg.ConnConfig.User,
		"schema_version", schemaVersion, "migrated_from", from, "max_conns", set.maxConns)
	return c, nil
}

// current returns the configured connection, or an ErrUnavailable error.
func (s *store) current() (*conn, error) { return s.conn.Get() }

// errCallTimeout is the cause of a call's context when the call ran out of callTimeout.
var errCallTimeout = errors.New("postgres: call timed out")

// run calls f and, when it failed because a connection broke (the server restarted, or
// terminated the backend), calls it once more on a fresh connection if that is safe: when
// idempotent is set, or when the driver knows nothing reached the server. It does not
// when opening a connection failed: the server cannot be reached, and trying again at
// once would only double the wait. Both attempts together are bounded by the settings'
// callTimeout. A failure that remains comes back with the storage package's meaning.
func (c *conn) run(ctx context.Context, op string, idempotent bool, f func(ctx context.Context) error) error {
	cctx := ctx
	if d := c.set.callTimeout(); d > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeoutCause(ctx, d, errCallTimeout)
		defer cancel()
	}
	err := f(cctx)
	if err != nil && cctx.Err() == nil && isConnErr(err) && !isConnectErr(err) {
		// One broken connection usually means all of them broke (a restart, a failover,
		// pg_terminate_backend of the plugin's sessions): drop every pooled connection,
		// so the retry, and the calls after it, open fresh ones.
		c.pool.Reset()
		if idempotent || pgconn.SafeToRetry(err) {
			err = f(cctx)
		}
	}
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errCallTimeout) {
		return fmt.Errorf("postgres %s: %w: PostgreSQL at %s did not answer within %v (statement_timeout + connect_timeout): %s",
			op, storage.ErrUnavailable, c.addr, c.set.callTimeout(), redact(err.Error(), c.set.url))
	}
	return c.mapErr(ctx, op, err)
}

// isConnectErr reports whether err is a failure to open a connection.
func isConnectErr(err error) bool {
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr)
}

// Health implements storage.HealthReporter: OK when the server answers a ping, with
// the pool's figures. When every pooled connection is busy (a load beyond max_conns, or
// statements stuck on a lock), the ping goes over a connection of its own, so a busy
// pool does not pass for a lost server.
func (s *store) Health(ctx context.Context) storage.Health {
	c, err := s.current()
	if err != nil {
		return storage.Health{Detail: err.Error()}
	}
	st := c.pool.Stat()
	h := storage.Health{Metrics: map[string]float64{
		"max_conns":                  float64(st.MaxConns()),
		"total_conns":                float64(st.TotalConns()),
		"acquired_conns":             float64(st.AcquiredConns()),
		"idle_conns":                 float64(st.IdleConns()),
		"empty_acquires_total":       float64(st.EmptyAcquireCount()),
		"canceled_acquires_total":    float64(st.CanceledAcquireCount()),
		"acquire_wait_seconds_total": st.AcquireDuration().Seconds(),
	}}
	pctx, cancel := context.WithTimeout(ctx, c.set.connectTimeout)
	defer cancel()
	// Through run: a pooled connection the server dropped (a restart) is replaced and the
	// ping made again, so a server that is back is not reported lost.
	if err := c.run(pctx, "health", true, c.ping); err != nil {
		h.Detail = err.Error()
		if pctx.Err() != nil {
			h.Detail = fmt.Sprintf("postgres health: PostgreSQL at %s did not answer a ping within %v", c.addr, c.set.connectTimeout)
		}
		return h
	}
	h.OK = true
	return h
}

// ping checks that the server answers, on a pooled connection if one is free within a
// moment, else on a connection of its own.
func (c *conn) ping(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	pc, err := c.pool.Acquire(actx)
	cancel()
	if err == nil {
		defer pc.Release()
		return pc.Ping(ctx)
	}
	if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	own, err := pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer own.Close(context.WithoutCancel(ctx))
	return own.Ping(ctx)
}

// Get implements storage.Storage.
func (s *store) Get(ctx context.Context, ns string, key []byte) (val []byte, found bool, err error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return nil, false, err
	}
	c, err := s.current()
	if err != nil {
		return nil, false, err
	}
	err = c.run(ctx, "get", true, func(ctx context.Context) error {
		val, found = nil, false
		err := c.pool.QueryRow(ctx, `SELECT value FROM limit_kv WHERE ns = $1 AND key = $2`, []byte(ns), key).Scan(&val)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return nil, false, err
	}
	return nonNil(val), true, nil
}

// Put implements storage.Storage.
func (s *store) Put(ctx context.Context, ns string, key, value []byte) error {
	if err := storage.ValidateNamespace(ns); err != nil {
		return err
	}
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if err := storage.ValidateValue(value); err != nil {
		return err
	}
	c, err := s.current()
	if err != nil {
		return err
	}
	return c.run(ctx, "put", true, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, sqlPut, []byte(ns), key, nonNil(value))
		return err
	})
}

const (
	sqlPut    = `INSERT INTO limit_kv (ns, key, value) VALUES ($1, $2, $3) ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value`
	sqlDelete = `DELETE FROM limit_kv WHERE ns = $1 AND key = $2`
)

// Delete implements storage.Storage. It is retried after a broken connection only when
// the statement never reached the server, since a repeat would report the key missing.
func (s *store) Delete(ctx context.Context, ns string, key []byte) (existed bool, err error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return false, err
	}
	c, err := s.current()
	if err != nil {
		return false, err
	}
	err = c.run(ctx, "delete", false, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, sqlDelete, []byte(ns), key)
		existed = tag.RowsAffected() > 0
		return err
	})
	return existed && err == nil, err
}

// scanSQL returns the query of a scan page: keys from $2 (inclusive) to $3 (exclusive,
// only when hasUpper), in order, $4 rows at most. Unless keysOnly, each row says whether
// its value still fits in the page's byte budget $5 (the first always does) and carries
// the value only then, so a page of large values stops at the budget without the server
// sending what does not fit.
func scanSQL(hasUpper, keysOnly bool) string {
	where := `ns = $1 AND key >= $2`
	if hasUpper {
		where += ` AND key < $3`
	} else {
		where += ` AND $3::bytea IS NULL`
	}
	if keysOnly {
		return `SELECT key, NULL::bytea, true FROM limit_kv WHERE ` + where + ` AND $5::bigint IS NOT NULL ORDER BY key LIMIT $4`
	}
	return `SELECT key, CASE WHEN fits THEN value END, fits FROM (
		SELECT key, value,
			row_number() OVER w = 1 OR sum(octet_length(key) + octet_length(value)) OVER w <= $5 AS fits
		FROM limit_kv WHERE ` + where + `
		WINDOW w AS (ORDER BY key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
		ORDER BY key LIMIT $4
	) page ORDER BY key`
}

// Scan implements storage.Storage. The page is read by one statement, so it is one
// consistent snapshot.
func (s *store) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := storage.NormalizeScan(&req); err != nil {
		return storage.ScanResult{}, err
	}
	c, err := s.current()
	if err != nil {
		return storage.ScanResult{}, err
	}
	lower, upper := storage.ScanBounds(req)
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return storage.ScanResult{Items: []storage.KeyValue{}}, nil
	}
	var res storage.ScanResult
	err = c.run(ctx, "scan", true, func(ctx context.Context) error {
		res = storage.ScanResult{Items: []storage.KeyValue{}}
		rows, err := c.pool.Query(ctx, scanSQL(upper != nil, req.KeysOnly),
			[]byte(req.Namespace), nonNil(lower), upper, req.Limit+1, int64(storage.MaxScanBytes))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				kv   storage.KeyValue
				fits bool
			)
			if err := rows.Scan(&kv.Key, &kv.Value, &fits); err != nil {
				return err
			}
			if len(res.Items) == req.Limit || !fits {
				res.More = true
				break
			}
			if !req.KeysOnly {
				kv.Value = nonNil(kv.Value)
			} else {
				kv.Value = nil
			}
			res.Items = append(res.Items, kv)
		}
		rows.Close()
		return rows.Err()
	})
	if err != nil {
		return storage.ScanResult{}, err
	}
	return res, nil
}

// Batch implements storage.Storage. Consecutive puts become one INSERT over arrays of
// keys and values, consecutive deletes one DELETE ... = ANY; the statements go to the
// server in one pipeline ending in a single Sync, so they run in one implicit
// transaction: all commit, or none. A batch is idempotent, so it is retried after a
// broken connection. A batch with assertions runs in a SERIALIZABLE transaction instead
// (see conditionalBatch).
func (s *store) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if err := storage.ValidateBatch(ns, ops); err != nil {
		return err
	}
	c, err := s.current()
	if err != nil {
		return err
	}
	if len(ops) == 0 {
		return ctx.Err()
	}
	segs := segments(ns, ops)
	if slices.ContainsFunc(ops, storage.Op.IsAssertion) {
		return c.run(ctx, "batch", false, func(ctx context.Context) error {
			return c.conditionalBatch(ctx, ns, ops, segs)
		})
	}
	return c.run(ctx, "batch", true, func(ctx context.Context) error {
		if len(segs) == 1 {
			_, err := c.pool.Exec(ctx, segs[0].sql(), segs[0].args()...)
			return err
		}
		b := &pgx.Batch{}
		for _, sg := range segs {
			b.Queue(sg.sql(), sg.args()...)
		}
		return c.pool.SendBatch(ctx, b).Close()
	})
}

// conditionalAttempts bounds the retries of a conditional batch that lost a
// serialization conflict.
const conditionalAttempts = 50

// conditionalBatch reads the asserted keys and applies the writes in one SERIALIZABLE
// transaction. The server's predicate locks make an assertion that a key is absent hold
// until commit, against any concurrent transaction that writes the key: one of two
// conflicting batches fails with a serialization error and is run again from the start,
// when its assertion sees the other's write. A failed assertion rolls back and returns
// its *storage.ConditionError.
func (c *conn) conditionalBatch(ctx context.Context, ns string, ops []storage.Op, segs []segment) error {
	var assertedNS, asserted [][]byte
	for _, op := range ops {
		if op.IsAssertion() {
			assertedNS = append(assertedNS, []byte(op.In(ns)))
			asserted = append(asserted, op.Key)
		}
	}
	var err error
	for attempt := range conditionalAttempts {
		err = pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT ns, key, value FROM limit_kv WHERE (ns, key) IN (SELECT n, k FROM unnest($1::bytea[], $2::bytea[]) AS t (n, k))`, assertedNS, asserted)
			if err != nil {
				return err
			}
			current := map[string][]byte{} // by namespace, NUL, key
			for rows.Next() {
				var n, k, v []byte
				if err := rows.Scan(&n, &k, &v); err != nil {
					rows.Close()
					return err
				}
				current[string(n)+"\x00"+string(k)] = nonNil(v)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if err := storage.CheckAssertionsIn(ns, ops, func(n string, key []byte) ([]byte, bool, error) {
				v, ok := current[n+"\x00"+string(key)]
				return v, ok, nil
			}); err != nil {
				return err
			}
			if len(segs) == 0 {
				return nil
			}
			b := &pgx.Batch{}
			for _, sg := range segs {
				b.Queue(sg.sql(), sg.args()...)
			}
			return tx.SendBatch(ctx, b).Close()
		})
		if !isSerializationFailure(err) || ctx.Err() != nil {
			return err
		}
		// Back off a little, more with each attempt, so the conflicting batches spread.
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("the batch's keys kept changing under %d attempts; try again: %w", conditionalAttempts, err)
}

// isSerializationFailure reports whether err is a serialization failure or deadlock,
// after which a transaction can run again.
func isSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

const (
	sqlPutMany = `INSERT INTO limit_kv (ns, key, value) SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t (k, v)
		ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value`
	sqlDeleteMany = `DELETE FROM limit_kv WHERE ns = $1 AND key = ANY ($2::bytea[])`
)

// segment is a run of consecutive operations of one kind in one namespace, each key once.
type segment struct {
	ns     []byte
	put    bool
	keys   [][]byte
	values [][]byte
}

func (sg segment) sql() string {
	if sg.put {
		return sqlPutMany
	}
	return sqlDeleteMany
}

func (sg segment) args() []any {
	if sg.put {
		return []any{sg.ns, sg.keys, sg.values}
	}
	return []any{sg.ns, sg.keys}
}

// segments splits the writes of a batch to namespace ns into runs of puts and runs of
// deletes in one namespace each, in order, leaving assertions out. Within a run of
// puts a key put twice keeps its last value (one INSERT cannot touch a row twice), which
// leaves the state the ops in order would.
func segments(ns string, ops []storage.Op) []segment {
	var (
		out []segment
		idx map[string]int // key → position in the current put run
	)
	for _, op := range ops {
		if op.IsAssertion() {
			continue
		}
		put := op.Kind == storage.OpPut
		opNS := op.In(ns)
		if len(out) == 0 || out[len(out)-1].put != put || string(out[len(out)-1].ns) != opNS {
			out = append(out, segment{ns: []byte(opNS), put: put})
			idx = map[string]int{}
		}
		sg := &out[len(out)-1]
		if !put {
			sg.keys = append(sg.keys, op.Key)
			continue
		}
		if i, ok := idx[string(op.Key)]; ok {
			sg.values[i] = nonNil(op.Value)
			continue
		}
		idx[string(op.Key)] = len(sg.keys)
		sg.keys = append(sg.keys, op.Key)
		sg.values = append(sg.values, nonNil(op.Value))
	}
	return out
}

// CompareAndSwap implements storage.Storage with one conditional statement: INSERT ... ON
// CONFLICT DO NOTHING when the key must be absent, UPDATE or DELETE ... WHERE value = the
// expected one when it must be present. The row lock the statement takes orders
// concurrent swaps; the loser re-checks the committed row and does not apply. When it did
// not apply, the current state is read back for the result.
func (s *store) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	if err := storage.ValidateCAS(req); err != nil {
		return storage.CASResult{}, err
	}
	c, err := s.current()
	if err != nil {
		return storage.CASResult{}, err
	}
	ns := []byte(req.Namespace)
	var res storage.CASResult
	err = c.run(ctx, "compare-and-swap", false, func(ctx context.Context) error {
		for range casAttempts {
			applied, err := c.casOnce(ctx, ns, req)
			if err != nil {
				return err
			}
			if applied {
				res = storage.CASResult{Swapped: true}
				if !req.Delete {
					res.Present, res.Current = true, bytes.Clone(nonNil(req.Value))
				}
				return nil
			}
			var cur []byte
			err = c.pool.QueryRow(ctx, `SELECT value FROM limit_kv WHERE ns = $1 AND key = $2`, ns, req.Key).Scan(&cur)
			present := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if present != req.ExpectPresent || (present && !bytes.Equal(cur, req.Expected)) {
				res = storage.CASResult{Present: present}
				if present {
					res.Current = nonNil(cur)
				}
				return nil
			}
			// The key is as expected now but was not when the statement ran: try again.
		}
		return fmt.Errorf("the key kept changing under %d attempts; try again", casAttempts)
	})
	if err != nil {
		return storage.CASResult{}, err
	}
	return res, nil
}

// casOnce runs the conditional statement of req and tells whether it applied. A delete
// of a key expected absent applies when the key is absent and changes nothing.
func (c *conn) casOnce(ctx context.Context, ns []byte, req storage.CASRequest) (bool, error) {
	var (
		tag pgconn.CommandTag
		err error
	)
	switch {
	case !req.ExpectPresent && !req.Delete:
		tag, err = c.pool.Exec(ctx, `INSERT INTO limit_kv (ns, key, value) VALUES ($1, $2, $3) ON CONFLICT (ns, key) DO NOTHING`,
			ns, req.Key, nonNil(req.Value))
	case !req.ExpectPresent && req.Delete:
		var one int
		err = c.pool.QueryRow(ctx, `SELECT 1 FROM limit_kv WHERE ns = $1 AND key = $2`, ns, req.Key).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return true, nil
		}
		return false, err
	case req.Delete:
		tag, err = c.pool.Exec(ctx, `DELETE FROM limit_kv WHERE ns = $1 AND key = $2 AND value = $3`, ns, req.Key, nonNil(req.Expected))
	default:
		tag, err = c.pool.Exec(ctx, `UPDATE limit_kv SET value = $4 WHERE ns = $1 AND key = $2 AND value = $3`,
			ns, req.Key, nonNil(req.Expected), nonNil(req.Value))
	}
	return err == nil && tag.RowsAffected() == 1, err
}

// Close implements storage.Storage: it waits for running requests and closes the pool.
// Calls after Close fail with ErrUnavailable.
func (s *store) Close() error {
	return s.conn.Close(func(c *conn) error {
		c.pool.Close()
		return nil
	})
}

// isConnErr reports whether err means the connection to the server failed or broke,
// rather than that the server refused the statement.
func isConnErr(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "57P01", // admin_shutdown (pg_terminate_backend, a fast shutdown)
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up, shutting down)
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// mapErr gives err the storage package's meaning: a lost server becomes ErrUnavailable
// naming host:port, a full disk on the server ErrNoSpace; the caller's context error
// passes unchanged. The message never holds the password.
func (c *conn) mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, ctxErr) || pgconn.Timeout(err) || isCanceled(err)) {
		return ctxErr
	}
	msg := redact(err.Error(), c.set.url)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrNoSpace),
		errors.Is(err, storage.ErrConditionFailed):
		return err
	case strings.Contains(err.Error(), "closed pool"):
		return fmt.Errorf("postgres %s: %w", op, errClosed)
	case errors.As(err, &pgErr) && (pgErr.Code == "53100" || pgErr.Code == "53400"): // disk_full, configuration_limit_exceeded
		return fmt.Errorf("postgres %s: %w: PostgreSQL at %s: %s", op, storage.ErrNoSpace, c.addr, msg)
	case errors.As(err, &pgErr) && (pgErr.Code == "57014" || pgErr.Code == "55P03"): // query_canceled by statement_timeout, lock_not_available
		return fmt.Errorf("postgres %s: %w: PostgreSQL at %s did not finish the statement within statement_timeout (%v; a lock held by another session, or an overloaded server): %s",
			op, storage.ErrUnavailable, c.addr, c.set.statementTimeout, msg)
	case isConnErr(err):
		return fmt.Errorf("postgres %s: %w: PostgreSQL at %s cannot be reached: %s", op, storage.ErrUnavailable, c.addr, msg)
	}
	return fmt.Errorf("postgres %s: %s", op, msg)
}

// isCanceled reports whether the server canceled the statement (query_canceled), which
// pgx asks for when the caller's context ends.
func isCanceled(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// nonNil returns b, or an empty slice for nil, so an empty value is stored as an empty
// bytea rather than NULL, and reads back as empty, not absent.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

var (
	_ storage.Storage        = (*store)(nil)
	_ storage.HealthReporter = (*store)(nil)
)

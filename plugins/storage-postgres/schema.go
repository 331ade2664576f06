package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migration is one step of the schema; versions count from 1 without gaps.
type migration struct {
	version     int
	description string
	sql         string
}

// migrations is the schema's history. Never edit an applied step: append a new one.
var migrations = []migration{
	{1, "key-value table", `CREATE TABLE limit_kv (
		ns    bytea NOT NULL,
		key   bytea NOT NULL,
		value bytea NOT NULL,
		PRIMARY KEY (ns, key)
	)`},
	// Values are often compressed or encrypted already; storing them out of line without
	// compression saves the server CPU and lets octet_length read the size without
	// fetching the value (scan pages are cut by size).
	{2, "store values uncompressed", `ALTER TABLE limit_kv ALTER COLUMN value SET STORAGE EXTERNAL`},
}

// schemaVersion is the version migrate brings a database to.
var schemaVersion = migrations[len(migrations)-1].version

// migrateLock is the advisory lock key that serializes migrations of plugins starting at
// once against one database (several hosts, or a restart racing a shutdown).
const migrateLock = 0x4c494d4954 // "LIMIT"

// migrate creates and upgrades the schema in one transaction, under an advisory lock, and
// refuses a database whose schema is newer than this plugin knows. It returns the version
// found before migrating.
func migrate(ctx context.Context, pool *pgxpool.Pool) (from int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS limit_schema_migrations (
			version     integer PRIMARY KEY,
			description text NOT NULL,
			applied_at  timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create limit_schema_migrations: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM limit_schema_migrations`).Scan(&from); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if from > schemaVersion {
			return fmt.Errorf("%w: the database has schema version %d, newer than this plugin's %d; use a newer limit-storage-postgres",
				errNewerSchema, from, schemaVersion)
		}
		for _, m := range migrations[from:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migrate to schema version %d (%s): %w", m.version, m.description, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO limit_schema_migrations (version, description) VALUES ($1, $2)`,
				m.version, m.description); err != nil {
				return fmt.Errorf("record schema version %d: %w", m.version, err)
			}
		}
		return nil
	})
	return from, err
}

// errNewerSchema marks a database migrated by a newer plugin.
var errNewerSchema = errors.New("schema too new")

# shellcheck shell=bash
# Sourced by .ci/run (with set -euo pipefail): start PostgreSQL 15, create the test role and
# database, and export LIMIT_TEST_POSTGRES_URL for the storage-postgres tests. Idempotent:
# running it again on a machine where all this is done changes nothing.
# Locally: `source .ci/setup.d/postgres.sh` (as root), then `make test` runs the PostgreSQL suite.

limit_pg_setup() {
  local ver=15 cluster=main port=5432
  local role=limit_test db=limit_test pass=limit_test

  if ! command -v pg_ctlcluster >/dev/null || [ ! -d "/usr/lib/postgresql/$ver/bin" ]; then
    echo "postgres.sh: installing postgresql-$ver with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "postgresql-$ver" postgresql-client >/dev/null
  fi
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$ver" -v c="$cluster" '$1==v && $2==c {f=1} END {exit !f}'; then
    echo "postgres.sh: creating cluster $ver/$cluster"
    pg_createcluster "$ver" "$cluster" --port "$port" >/dev/null
  fi
  # pg_ctlcluster start fails when the cluster already runs; ask first.
  if ! pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1==v && $2==c && $4=="online" {f=1} END {exit !f}'; then
    pg_ctlcluster "$ver" "$cluster" start
  fi
  local i
  for i in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.2
  done
  pg_isready -h 127.0.0.1 -p "$port"

  # The role may terminate backends (pg_signal_backend) so the tests can cut connections
  # and check that the plugin reconnects.
  su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $port" <<SQL
SET client_min_messages TO warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role LOGIN PASSWORD '$pass';
  END IF;
END
\$\$;
GRANT pg_signal_backend TO $role;
SELECT 'CREATE DATABASE $db OWNER $role' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')\gexec
SQL
  export LIMIT_TEST_POSTGRES_URL="postgres://$role:$pass@127.0.0.1:$port/$db?sslmode=disable"
  echo "postgres.sh: PostgreSQL $ver ready; LIMIT_TEST_POSTGRES_URL set (database $db, role $role)"
}
limit_pg_setup
unset -f limit_pg_setup

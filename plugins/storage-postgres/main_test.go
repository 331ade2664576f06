package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// serveEnv makes the test binary serve the plugin instead of running tests, so tests get a
// real plugin process without building one.
const serveEnv = "LIMIT_TEST_SERVE_PLUGIN"

// testURLEnv names the PostgreSQL server the tests use, e.g.
// postgres://limit_test:limit_test@127.0.0.1:5432/limit_test?sslmode=disable
// (.ci/setup.d/postgres.sh starts a server and sets it).
const testURLEnv = "LIMIT_TEST_POSTGRES_URL"

// skippedBanner is printed when the suite cannot run, so `make test` output says so.
const skippedBanner = `
################################################################################
#  PostgreSQL suite SKIPPED: set LIMIT_TEST_POSTGRES_URL to a database the tests
#  may write to, e.g. run  source .ci/setup.d/postgres.sh  (as root) first.
################################################################################
`

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		main()
		os.Exit(0)
	}
	if os.Getenv(testURLEnv) == "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL: CI=true but %s is not set: the PostgreSQL suite must run in CI (.ci/setup.d/postgres.sh sets it)\n", testURLEnv)
			os.Exit(1)
		}
		fmt.Fprint(os.Stderr, skippedBanner)
	}
	os.Exit(m.Run())
}

// serverURL returns the test server's URL, or skips the test when there is none.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(testURLEnv)
	if u == "" {
		t.Skipf("PostgreSQL suite skipped: %s is not set", testURLEnv)
	}
	return u
}

// randomName returns prefix followed by random hex, usable as an SQL identifier.
func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// withParams returns connURL with the query parameters of kv (name, value, ...) set.
func withParams(t testing.TB, connURL string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(connURL)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", testURLEnv, err)
	}
	q := u.Query()
	for i := 0; i < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// adminConn opens a connection to the test server for the test's own statements.
func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), serverURL(t))
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// freshSchema creates an empty schema, dropped at cleanup, and returns a URL whose
// connections use it (search_path) and carry a unique application_name, so a test has
// tables and sessions of its own on a shared server.
func freshSchema(t testing.TB) (connURL, schema, appName string) {
	t.Helper()
	admin := adminConn(t)
	schema = randomName("limit_test_")
	if _, err := admin.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), serverURL(t))
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	appName = strings.Replace(schema, "limit_test_", "limit-test-", 1)
	return withParams(t, serverURL(t), "search_path", schema, "application_name", appName), schema, appName
}

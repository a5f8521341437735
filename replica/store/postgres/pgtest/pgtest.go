// Package pgtest gives tests a PostgreSQL schema of their own on the test
// server named by the environment variable CHARTSYNC_TEST_POSTGRES.
//
// # Usage
//
//	func TestSomething(t *testing.T) {
//		conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
//		st, err := postgres.Open(ctx, conn, postgres.Config{Schema: schema})
//		...
//	}
//
// ConnString skips the test, with a message naming the variable, when it
// is unset, except under CI (the variable CI is set), where a missing
// server fails the test: CI must not pass by running none of them.
// .ci/postgres starts a throwaway server and prints the variable.
//
// Each Schema is new, named at random, and dropped with everything in it
// when the test ends, so tests can run in parallel on one server and leave
// nothing behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar is the environment variable that holds the test server's
// connection string.
const EnvVar = "CHARTSYNC_TEST_POSTGRES"

// ConnString returns the test server's connection string, or skips t when
// EnvVar is unset (outside CI; under CI it fails t).
func ConnString(t testing.TB) string {
	t.Helper()
	s := os.Getenv(EnvVar)
	if s == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must start PostgreSQL (.ci/postgres) for this test", EnvVar)
		}
		t.Skipf("PostgreSQL test: set %s to a server's connection string to run it (eval \"$(.ci/postgres start)\" starts one)", EnvVar)
	}
	return s
}

// Schema creates a new, empty schema on the test server and returns its
// name; it is dropped, with everything in it, when t ends. It skips t as
// ConnString does.
func Schema(t testing.TB) string {
	t.Helper()
	conn := ConnString(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("name a schema: %v", err)
	}
	name := "test_" + hex.EncodeToString(b[:])
	exec(t, conn, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() { exec(t, conn, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE") })
	return name
}

func exec(t testing.TB, connString, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect to the test server (%s): %v", EnvVar, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

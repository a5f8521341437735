package sqlite

import (
	"database/sql"
	"encoding/json"

	sqlite3 "github.com/mutecomm/go-sqlcipher/v4"
)

// driverName is the database/sql driver the store opens its databases
// with: the SQLCipher build of SQLite (github.com/mutecomm/go-sqlcipher),
// with the functions the store's SQL uses added to every connection.
// That SQLite (3.33) is built without JSON1, so a chart's scope (a JSON
// array of clinic IDs) is read by scope_has, in Go.
//
// Each connection also turns SQLCipher's memory security off (a setting
// of the process, which SQLCipher 4.5 turned off by default too): with
// it, SQLite's every allocation is locked into memory and every free
// zeroed and unlocked, two system calls each, which made opening a store
// three to four times as slow. What it keeps out of swap is SQLite's share of
// the process's memory only: the charts read, the Automerge documents and
// the key itself live in memory it does not cover.
const driverName = "chartsync-sqlite"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		if _, err := c.Exec("PRAGMA cipher_memory_security = OFF", nil); err != nil {
			return err
		}
		return c.RegisterFunc("scope_has", scopeHas, true)
	}})
}

// scopeHas reports whether scope, a chart's stored scope, holds clinic.
// A scope that is not a JSON array holds nothing, and only its strings
// are clinics.
func scopeHas(scope, clinic string) bool {
	for _, c := range scopeClinics(scope) {
		if c == clinic {
			return true
		}
	}
	return false
}

// scopeClinics returns the clinics of a stored scope: the strings of a
// JSON array, none for anything else.
func scopeClinics(scope string) []string {
	var elems []any
	if err := json.Unmarshal([]byte(scope), &elems); err != nil {
		return nil
	}
	var out []string
	for _, e := range elems {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

package keyring

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkUnlock measures Unlock (reading the file, deriving the
// password's key, unsealing) with DefaultParams and with the parameters
// one might choose instead: what a user waits for at each login.
func BenchmarkUnlock(b *testing.B) {
	for _, p := range []Params{
		DefaultParams,
		{Memory: 64 << 10, Time: 3, Threads: 1},
		{Memory: 64 << 10, Time: 2, Threads: 2},
		{Memory: 19 << 10, Time: 2, Threads: 1}, // OWASP's minimum, as package login uses
	} {
		b.Run(fmt.Sprintf("m=%dMiB,t=%d,p=%d", p.Memory>>10, p.Time, p.Threads), func(b *testing.B) {
			_, rcpt := newRecovery(b)
			path := filepath.Join(b.TempDir(), "keyring")
			if _, err := (Config{Params: p}).Create(path, rcpt, "amina", aminaPassword); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unlock(path, "amina", aminaPassword); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnlockWrongPassword: a wrong password costs as much as a
// right one (the derivation is the cost).
func BenchmarkUnlockWrongPassword(b *testing.B) {
	_, rcpt := newRecovery(b)
	path := filepath.Join(b.TempDir(), "keyring")
	if _, err := Create(path, rcpt, "amina", aminaPassword); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Unlock(path, "amina", baraPassword); err == nil {
			b.Fatal("a wrong password unlocked")
		}
	}
}

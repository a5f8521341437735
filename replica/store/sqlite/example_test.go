package sqlite_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// A store encrypted at rest: it opens with its key only.
func ExampleOpenConfig() {
	dir, err := os.MkdirTemp("", "sqlite-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	path := filepath.Join(dir, "charts.db")
	key := make([]byte, sqlite.KeySize)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}

	s, err := sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
	if err != nil {
		panic(err)
	}
	if _, err := s.Write(ctx, store.Batch{Meta: map[string]string{"allergy": "penicillin"}}); err != nil {
		panic(err)
	}
	s.Close()

	_, err = sqlite.Open(ctx, path)
	fmt.Println("without the key:", errors.Is(err, sqlite.ErrWrongKey))
	s, err = sqlite.OpenConfig(ctx, path, sqlite.Config{Key: key})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	v, err := s.Meta(ctx, "allergy")
	fmt.Println("with it:", v, err)
	// Output:
	// without the key: true
	// with it: penicillin <nil>
}

package postgres_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"os"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
)

// Two cloud nodes share one database: a change written through one is in
// the log that the other reads, at the position the writer was given.
// (It needs a server, so it is compiled but not run by go test.)
func Example() {
	ctx := context.Background()
	conn := os.Getenv("CHARTSYNC_TEST_POSTGRES") // e.g. postgres://chartsync:secret@127.0.0.1:5432/chartsync
	north, err := postgres.Open(ctx, conn, postgres.Config{Schema: "cloud"})
	if err != nil {
		log.Fatal(err)
	}
	defer north.Close()
	south, err := postgres.Open(ctx, conn, postgres.Config{Schema: "cloud"})
	if err != nil {
		log.Fatal(err)
	}
	defer south.Close()

	raw := []byte("an Automerge change")
	head, err := north.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "chart-1", Hash: sha256.Sum256(raw), Raw: raw}}})
	if err != nil {
		log.Fatal(err)
	}
	log1, err := south.Log(ctx, head-1, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(log1[0].Seq == head, string(log1[0].Raw))
}

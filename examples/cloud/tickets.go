package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// Every node encrypts the TLS session tickets it gives devices with keys
// kept in the cloud's state, so that a device resumes its session with
// whichever node it reaches next, and with a restarted node. A new key is
// made every ticketRotation; a node starts encrypting with a key only
// once it is ticketRefresh old (so every node, looking at the kept keys
// every ticketRefresh, has it by then to open those tickets); a key is
// kept, to open the tickets it sealed, for a ticket's lifetime after it
// stopped encrypting (httpsync.TicketKeyLifetime), then forgotten. So at
// most ten keys are kept, one encrypts, all decrypt.
const (
	ticketRotation = 24 * time.Hour
	ticketRefresh  = time.Hour
	// ticketKeep is how long after it was made a key is kept.
	ticketKeep = ticketRotation + ticketRefresh + httpsync.TicketKeyLifetime
)

// ticketKey is one session ticket key.
type ticketKey struct {
	Created time.Time
	Key     [32]byte
}

// rotateTicketKeys returns keys (oldest first) with those older than
// ticketKeep dropped and a new one made if the newest is ticketRotation
// old; changed says whether anything was.
func rotateTicketKeys(keys []ticketKey, now time.Time) (kept []ticketKey, changed bool) {
	kept = slices.DeleteFunc(slices.Clone(keys), func(k ticketKey) bool { return now.Sub(k.Created) >= ticketKeep })
	changed = len(kept) != len(keys)
	slices.SortFunc(kept, func(a, b ticketKey) int { return a.Created.Compare(b.Created) })
	if len(kept) == 0 || now.Sub(kept[len(kept)-1].Created) >= ticketRotation {
		k := ticketKey{Created: now.UTC().Truncate(time.Microsecond)} // as a database keeps it
		rand.Read(k.Key[:])
		kept = append(kept, k)
		changed = true
	}
	return kept, changed
}

// ticketKeyOrder returns the keys as httpsync.SetTicketKeys takes them:
// the newest key at least ticketRefresh old first (or the oldest, when
// none is), then the others, newest first.
func ticketKeyOrder(keys []ticketKey, now time.Time) [][32]byte {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b ticketKey) int { return b.Created.Compare(a.Created) })
	enc := len(sorted) - 1
	for i, k := range sorted {
		if now.Sub(k.Created) >= ticketRefresh {
			enc = i
			break
		}
	}
	out := make([][32]byte, 0, len(sorted))
	if enc >= 0 {
		out = append(out, sorted[enc].Key)
	}
	for i, k := range sorted {
		if i != enc {
			out = append(out, k.Key)
		}
	}
	return out
}

// fileTickets is the ticket keys' file in dirCA: JSON, 0600, written
// atomically under the enrolment lock.
const fileTickets = "ticket.keys"

type ticketKeyJSON struct {
	Created time.Time `json:"created"`
	Key     string    `json:"key"` // 64 hex digits
}

// TicketKeys implements state: DIR/ca/ticket.keys.
func (s fileState) TicketKeys(_ context.Context, now time.Time) ([][32]byte, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	path := filepath.Join(s.dir, dirCA, fileTickets)
	var keys []ticketKey
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ticket keys: %w", err)
	default:
		var kept []ticketKeyJSON
		if err := json.Unmarshal(data, &kept); err != nil {
			return nil, fmt.Errorf("ticket keys %s: %w (remove the file: devices then make one full handshake)", path, err)
		}
		for _, k := range kept {
			var tk ticketKey
			if b, err := hex.DecodeString(k.Key); err != nil || len(b) != len(tk.Key) {
				return nil, fmt.Errorf("ticket keys %s: a key is not 64 hex digits (remove the file: devices then make one full handshake)", path)
			} else {
				copy(tk.Key[:], b)
			}
			tk.Created = k.Created
			keys = append(keys, tk)
		}
	}
	keys, changed := rotateTicketKeys(keys, now)
	if changed {
		out := make([]ticketKeyJSON, len(keys))
		for i, k := range keys {
			out[i] = ticketKeyJSON{Created: k.Created, Key: hex.EncodeToString(k.Key[:])}
		}
		data, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("ticket keys: %w", err)
		}
		if err := atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600}); err != nil {
			return nil, fmt.Errorf("ticket keys: %w", err)
		}
	}
	return ticketKeyOrder(keys, now), nil
}

// ticketLockKey is the advisory lock under which a database's ticket keys
// are rotated.
const ticketLockKey = 0x6368617274746b74

// secretTicketKey names a ticket key's seal.
const secretTicketKey = "ticket key"

// TicketKeys implements state: the cloud_ticket_keys table, each key
// sealed with the operator key, rotated by one node at a time.
func (s *pgState) TicketKeys(ctx context.Context, now time.Time) ([][32]byte, error) {
	var keys []ticketKey
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(ticketLockKey)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT created, sealed FROM cloud_ticket_keys")
		if err != nil {
			return err
		}
		var old []ticketKey
		for rows.Next() {
			var k ticketKey
			var sealed []byte
			if err := rows.Scan(&k.Created, &sealed); err != nil {
				rows.Close()
				return err
			}
			plain, err := s.key.open(secretTicketKey, sealed)
			if err != nil {
				rows.Close()
				return err
			}
			if len(plain) != len(k.Key) {
				rows.Close()
				return fmt.Errorf("a ticket key of %d bytes: %w", len(plain), errWrongKey)
			}
			copy(k.Key[:], plain)
			old = append(old, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var changed bool
		if keys, changed = rotateTicketKeys(old, now); !changed {
			return nil
		}
		if _, err := tx.Exec(ctx, "DELETE FROM cloud_ticket_keys WHERE created <= $1", now.Add(-ticketKeep)); err != nil {
			return err
		}
		if newest := keys[len(keys)-1]; !slices.ContainsFunc(old, func(k ticketKey) bool { return k.Key == newest.Key }) {
			_, err = tx.Exec(ctx, "INSERT INTO cloud_ticket_keys(created, sealed) VALUES ($1, $2)", newest.Created, s.key.seal(secretTicketKey, newest.Key[:]))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ticket keys: %w", err)
	}
	return ticketKeyOrder(keys, now), nil
}

// refreshTickets sets the server's ticket keys from the state now and
// every ticketRefresh until ctx is done; done is closed when it has
// stopped. A failure to refresh leaves the keys the node has (they
// serve for days) and is logged.
func refreshTickets(ctx context.Context, st state, set func([][32]byte) error, log *slog.Logger) (done <-chan struct{}, err error) {
	keys, err := st.TicketKeys(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	if err := set(keys); err != nil {
		return nil, err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(ticketRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			keys, err := st.TicketKeys(ctx, time.Now())
			if err == nil {
				err = set(keys)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("cannot refresh the TLS session ticket keys; keeping those held", "err", err)
			}
		}
	}()
	return stopped, nil
}

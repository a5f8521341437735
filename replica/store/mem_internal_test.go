package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// The memory store keeps a chart's changes compressed, as the SQLite
// store does, and gives them back as written; a writer's Packed form is
// kept as it is.
func TestMemKeepsChangesPacked(t *testing.T) {
	ctx := context.Background()
	by := record.Author{UserID: "u-wairimu", Name: "Nurse Wairimu", Role: record.RoleNurse, Device: "kamuga-tablet-1"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	c, res, err := record.New(uuid.NewString(), crdt.NewActorID(), by, at, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi",
		Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga", Phone: "+254 712 345678", HomeClinic: "kamuga"})
	require.NoError(t, err)
	chs := []crdt.Change{res.Change}
	for i := range 5 {
		r, err := c.Do(by, at.Add(time.Duration(i+1)*time.Minute), record.AddAllergy{Substance: "penicillin", Reaction: "rash", Severity: "moderate"})
		require.NoError(t, err)
		chs = append(chs, r.Change)
	}
	m := NewMem()
	defer m.Close()
	var b Batch
	for _, ch := range chs {
		b.Changes = append(b.Changes, NewChange{Chart: c.ID(), Hash: ch.Hash, Raw: ch.Raw})
	}
	_, err = m.Write(ctx, b)
	require.NoError(t, err)

	raw, kept := 0, 0
	for i, ch := range chs {
		raw += len(ch.Raw)
		kept += len(m.log[i].Raw)
	}
	assert.Less(t, kept, raw/2, "%d bytes of changes kept in %d", raw, kept)
	got, err := m.ChartChanges(ctx, c.ID(), 0)
	require.NoError(t, err)
	require.Len(t, got, len(chs))
	for i, ch := range chs {
		assert.Equal(t, ch.Raw, got[i].Raw, "change %d reads back as written", i)
	}
	got[0].Raw[0] ^= 0xff
	again, err := m.ChartChanges(ctx, c.ID(), 0)
	require.NoError(t, err)
	assert.Equal(t, chs[0].Raw, again[0].Raw, "a reader's copy is its own")
}

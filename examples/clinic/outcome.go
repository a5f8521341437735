package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// unsureError reports a save whose outcome the replica could not tell
// (store.ErrOutcomeUnknown), once the chart has been read back to find
// out: Saved says whether the entry is in the chart now.
type unsureError struct {
	What  string // "the entry", "the registration"
	Saved bool
	Entry string // what was found, when Saved
	Err   error
}

func (e *unsureError) Error() string {
	if e.Saved {
		return fmt.Sprintf("%s was saved (%s) although the device reported a storage error: %v", e.What, e.Entry, e.Err)
	}
	return fmt.Sprintf("%s was NOT saved (the device reported a storage error: %v)", e.What, e.Err)
}

func (e *unsureError) Unwrap() error { return e.Err }

// explain says what a person should do after a save whose outcome was
// checked by reading the chart back.
func (e *unsureError) explain() string {
	problem := "failing"
	if errors.Is(e.Err, store.ErrDiskFull) {
		problem = "full"
	}
	if e.Saved {
		again := "Do not enter it again."
		if e.What == "the registration" {
			again = "Do not register the patient again."
		}
		return fmt.Sprintf("%s was saved (%s), although the device reported a storage error. %s "+
			"The device's storage is %s: free space or have the device checked before going on. (Details: %v)",
			e.What, e.Entry, again, problem, e.Err)
	}
	return fmt.Sprintf("%s was NOT saved: the device reported a storage error (its storage is %s). "+
		"Free space or have the device's storage checked, then run the same command again. (Details: %v)", e.What, problem, e.Err)
}

// checkEdit reads a chart back after an edit failed with
// store.ErrOutcomeUnknown and says whether the edit is in it: a history
// entry that before (the chart as read before the edit) does not have.
// Any other error is returned as it is.
func checkEdit(ctx context.Context, r *replica.Replica, id string, before record.View, err error) error {
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		return err
	}
	after, rerr := r.Chart(ctx, id)
	if rerr != nil {
		return fmt.Errorf("%w; reading the chart back to see whether the entry was saved failed too (%v): do not enter it again until \"clinic show\" can show the chart", err, rerr)
	}
	seen := map[crdt.Hash]bool{}
	for _, h := range before.History {
		seen[h.Change] = true
	}
	for _, h := range after.History {
		if !seen[h.Change] {
			return &unsureError{What: "the entry", Saved: true, Entry: h.Summary, Err: err}
		}
	}
	return &unsureError{What: "the entry", Err: err}
}

// checkRegister looks for the chart of a registration that failed with
// store.ErrOutcomeUnknown: one registered by by since start with the
// patient's names. Any other error is returned as it is.
func checkRegister(ctx context.Context, r *replica.Replica, by record.Author, reg record.Register, start time.Time, err error) error {
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		return err
	}
	text := reg.FamilyName
	if text == "" {
		text = reg.GivenName
	}
	charts, rerr := r.Find(ctx, text, 0)
	if rerr != nil {
		return fmt.Errorf("%w; looking for the patient to see whether the registration was saved failed too (%v): do not register the patient again until \"clinic find\" works", err, rerr)
	}
	for _, c := range charts {
		if c.GivenName != reg.GivenName || c.FamilyName != reg.FamilyName {
			continue
		}
		v, rerr := r.Chart(ctx, c.ID)
		if rerr != nil {
			return fmt.Errorf("%w; reading chart %s back failed too (%v): do not register the patient again until \"clinic find\" works", err, c.ID, rerr)
		}
		for _, h := range v.History {
			if h.Op == "register" && h.By.UserID == by.UserID && !h.At.Before(start.Truncate(time.Second)) {
				return &unsureError{What: "the registration", Saved: true,
					Entry: fmt.Sprintf("%s, chart %s", strings.TrimSpace(record.Patient(reg).FullName()), c.ID), Err: err}
			}
		}
	}
	return &unsureError{What: "the registration", Err: err}
}

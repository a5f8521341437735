// Package forge makes changes that package record would refuse to make,
// as a modified client could, for tests of the checks that must catch
// them. Nothing outside tests should import it.
package forge

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// Prescription returns a new chart of a patient of clinic, registered by
// registrar, with on top a prescription written directly in record's
// storage format under by's name, whatever by's role may do. Its commit
// message calls it a lab result. Its changes are made as actor (a
// device's replica ID; empty for a random one).
func Prescription(actor string, registrar, by record.Author, clinic string, at time.Time) (*record.Chart, error) {
	if actor == "" {
		actor = crdt.NewActorID()
	}
	c, _, err := record.New(uuid.NewString(), actor, registrar, at, record.Register{
		GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: clinic,
	})
	if err != nil {
		return nil, err
	}
	if err := PrescriptionOn(c, by, at.Add(time.Hour)); err != nil {
		return nil, err
	}
	return c, nil
}

// PrescriptionOn adds to chart c a prescription written directly in
// record's storage format under by's name at at, whatever by's role may
// do, as Prescription does.
func PrescriptionOn(c *record.Chart, by record.Author, at time.Time) error {
	msg, err := json.Marshal(map[string]any{"op": "record-lab-result", "user": by.UserID, "name": by.Name,
		"role": by.Role, "device": by.Device, "entry": "", "summary": "Recorded a lab result", "at": at.UnixMilli()})
	if err != nil {
		return err
	}
	rx := uuid.NewString()
	_, err = c.Doc().Edit(string(msg), at, func(tx *crdt.Tx) error {
		for _, f := range [][2]string{{"drug", "Morphine"}, {"dose", "10"}, {"unit", "mg"}, {"route", "oral"}, {"frequency", "Q4H"}, {"status", "active"}} {
			w, err := json.Marshal(map[string]any{"k": record.KindPrescription, "e": rx, "f": f[0], "v": f[1],
				"u": by.UserID, "n": by.Name, "r": by.Role, "d": by.Device, "t": at.UnixMilli()})
			if err != nil {
				return err
			}
			if err := tx.Put([]string{"w"}, uuid.NewString(), string(w)); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

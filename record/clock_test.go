package record_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// TestWrongClock: checks that depend on today's date (a birth year not
// after this year, a birth date, an onset not in the future) use a sane
// reference when the device's clock is obviously wrong, and say so. The
// chart is a patient with an estimated birth year of 1990.
//
// A clock before this release (record.ReleaseDate), as one reset to
// 1970, or more than a day before the chart's latest change, is wrong:
// the checks use the later of the release date and the chart's latest
// change instead, the edit is made (at the clock's time, which is what
// the device says), and its Result.Clock is a *ClockError naming the
// clock. A value that fails even then is refused, and the refusal names
// the clock too. A clock ahead (+5 years) cannot be told from a chart
// left alone for years: its edits are made, and a device whose clock is
// then set right still edits the chart whose latest change is "in the
// future", told that one of the clocks is wrong.
func TestWrongClock(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	ahead := t0.AddDate(5, 0, 0)
	for _, tc := range []struct {
		name string
		// edited is when the chart's latest change was made (t0, or
		// ahead for a chart edited on a device whose clock ran ahead).
		edited, clock time.Time
		// wrong: the clock is found wrong; reference is what the
		// checks use then.
		wrong     bool
		reference time.Time
	}{
		{name: "the clock at 1970", edited: t0, clock: epoch, wrong: true, reference: t0},
		{name: "the clock a year before the chart's latest change", edited: t0, clock: t0.AddDate(-1, 0, 0), wrong: true, reference: t0},
		{name: "the clock five years ahead", edited: t0, clock: ahead},
		{name: "the clock set right after edits five years ahead", edited: ahead, clock: t0, wrong: true, reference: ahead},
		{name: "the clock an hour before the chart's latest change", edited: t0, clock: t0.Add(-time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := baseRegister()
			reg.EstimatedBirthYear = 1990
			c, res, err := record.New(uuid.NewString(), crdt.NewActorID(), registry, t0, reg)
			require.NoError(t, err)
			if tc.edited != t0 {
				do(t, c, nurse, tc.edited, record.UpdateDemographics{Phone: ptr("+254 700 000001")})
			}

			res, err = c.Do(nurse, tc.clock, record.UpdateDemographics{Village: ptr("Lwanda")})
			require.NoError(t, err, "changing the village is refused: the birth year is blamed for the clock")
			assert.Equal(t, "Lwanda", view(t, c).Patient.Village)
			assert.Equal(t, tc.clock.Unix(), res.Change.Time.Unix(), "the change carries the device's time")
			if !tc.wrong {
				assert.NoError(t, res.Clock, "a sane clock is not reported")
			} else {
				require.ErrorIs(t, res.Clock, record.ErrClock, "the wrong clock is reported")
				var ce *record.ClockError
				require.True(t, errors.As(res.Clock, &ce))
				assert.True(t, ce.Clock.Equal(tc.clock), "it names what the clock read")
				assert.True(t, ce.Reference.Equal(tc.reference), "checked against %s, want %s", ce.Reference, tc.reference)
				assert.Contains(t, ce.Error(), "clock")
			}

			_, err = c.Do(doctor, tc.clock, record.Diagnose{Code: "B54", Text: "Malaria", Onset: t0.AddDate(0, 0, -3).Format(time.DateOnly)})
			require.NoError(t, err, "an onset three days before the chart's registration is not in the future")

			// A value that fails even against the reference is refused,
			// and a wrong clock is named in the refusal.
			_, err = c.Do(nurse, tc.clock, record.UpdateDemographics{EstimatedBirthYear: ptr(2999)})
			var ve *record.ValidationError
			require.ErrorAs(t, err, &ve, "a birth year of 2999 is refused")
			assert.Equal(t, "estimated_birth_year", ve.Field)
			if tc.wrong {
				assert.Contains(t, ve.Reason, "clock", "the refusal names the clock")
			} else {
				assert.NotContains(t, ve.Reason, "clock")
			}
		})
	}
}

// TestRegisterWithAClockAt1970: a patient born in 1990 is registered on a
// device whose clock reads 1970, told the clock is wrong; a registration
// born "in 2999" is refused, naming the clock.
func TestRegisterWithAClockAt1970(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	reg := baseRegister()
	reg.EstimatedBirthYear = 1990
	c, res, err := record.New(uuid.NewString(), crdt.NewActorID(), registry, epoch, reg)
	require.NoError(t, err, "a birth year of 1990 is blamed for the clock")
	assert.Equal(t, 1990, view(t, c).Patient.EstimatedBirthYear)
	var ce *record.ClockError
	require.ErrorAs(t, res.Clock, &ce)
	assert.True(t, ce.Reference.Equal(record.ReleaseDate()), "checked against the release date")

	reg.BirthDate, reg.EstimatedBirthYear = "2024-06-01", 0
	_, _, err = record.New(uuid.NewString(), crdt.NewActorID(), registry, epoch, reg)
	require.NoError(t, err, "a birth date before the release is not in the future")

	reg.BirthDate = "2999-01-01"
	_, _, err = record.New(uuid.NewString(), crdt.NewActorID(), registry, epoch, reg)
	var ve *record.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "birth_date", ve.Field)
	assert.Contains(t, ve.Reason, "clock")
}

func ptr[T any](v T) *T { return &v }

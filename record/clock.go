package record

import (
	"errors"
	"fmt"
	"time"
)

// releaseDate is a day this release of the software is known to run
// after: a device clock reading an earlier time is wrong. It is moved
// forward at releases; a date too early only lets a clock that is a
// little wrong go unnoticed.
var releaseDate = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// ReleaseDate returns a day this release of the software is known to run
// after: a device clock reading an earlier time is wrong (see ClockError).
func ReleaseDate() time.Time { return releaseDate }

// clockSlack is how far a device clock may be behind the chart's latest
// change before it is reported: devices' clocks differ by minutes, and a
// change made just before midnight elsewhere is no sign of a wrong clock.
const clockSlack = 24 * time.Hour

// ErrClock is matched by every *ClockError: the device's clock reads a
// time it cannot be.
var ErrClock = errors.New("record: device clock wrong")

// ClockError reports a device clock that is obviously wrong: it reads a
// time before this release of the software (ReleaseDate), or more than a
// day before the latest change of the chart being edited. The checks that
// depend on today's date (a birth date or year, an onset, a specimen or
// encounter not in the future) then use Reference instead of the clock,
// so that a clock reset to 1970 does not refuse a patient born in 1990.
// The change itself still carries the clock's time, which is what the
// device says.
type ClockError struct {
	// Clock is the time the device's clock read.
	Clock time.Time
	// Reference is the time the date checks used instead: the latest
	// of the clock, ReleaseDate and the chart's latest change.
	Reference time.Time
	// Reason says how the clock was found wrong.
	Reason string
}

func (e *ClockError) Error() string {
	return fmt.Sprintf("the device clock reads %s, %s: dates were checked against %s instead; set the device's date and time",
		e.Clock.UTC().Format("2006-01-02 15:04 MST"), e.Reason, e.Reference.UTC().Format("2006-01-02 15:04 MST"))
}

// Is makes errors.Is(err, ErrClock) true.
func (e *ClockError) Is(target error) bool { return target == ErrClock }

// today returns the time the checks that depend on today's date use for
// an edit made at at of a chart whose latest recorded change was made at
// latest (zero for a new chart): the latest of at, latest and
// ReleaseDate, so that a value plausible on the clock of the device that
// made the chart's latest change is not refused here. The *ClockError is
// non-nil when at is obviously wrong.
func today(at, latest time.Time) (time.Time, *ClockError) {
	ref := at
	if latest.After(ref) {
		ref = latest
	}
	if releaseDate.After(ref) {
		ref = releaseDate
	}
	switch {
	case at.Before(releaseDate):
		return ref, &ClockError{Clock: at, Reference: ref,
			Reason: fmt.Sprintf("before this software was released (%s)", releaseDate.Format(time.DateOnly))}
	case latest.Sub(at) > clockSlack:
		return ref, &ClockError{Clock: at, Reference: ref,
			Reason: fmt.Sprintf("before the chart's latest change (%s): this device's clock, or that of the device that made the change, is wrong", latest.UTC().Format("2006-01-02 15:04 MST"))}
	}
	return ref, nil
}

// dateFields are the fields whose checks depend on today's date.
var dateFields = map[string]bool{"birth_date": true, "estimated_birth_year": true, "onset": true, "specimen_at": true, "date": true}

// blameClock adds to err, a refusal of a value checked against today's
// date while the device's clock is wrong, that the clock is wrong: the
// value may be right and the clock not. Other errors are returned as
// they are.
func blameClock(err error, clock *ClockError) error {
	var ve *ValidationError
	if clock == nil || !errors.As(err, &ve) || !dateFields[ve.Field] {
		return err
	}
	return &ValidationError{Field: ve.Field, Reason: ve.Reason + " (checked against " + clock.Reference.UTC().Format(time.DateOnly) + ", since " + clock.Error() + ")"}
}

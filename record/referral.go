package record

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"
)

// Statuses of a referral.
const (
	StatusEnded = "ended"
)

// Refer shares the chart with another clinic (a referral): from then on
// the chart is in that clinic's scope as well as its home clinic's, so
// the clinic's devices receive it and may edit it.
type Refer struct {
	ToClinic string
	Reason   string
	// ExternalID is the referral's identifier in another system, if any.
	ExternalID Identifier
}

func (o Refer) plan(s *state, at time.Time) (*plan, error) {
	if err := required("to_clinic", o.ToClinic); err != nil {
		return nil, err
	}
	to := strings.TrimSpace(o.ToClinic)
	if slices.Contains(s.scope(), to) {
		return nil, fmt.Errorf("refer to %s: the chart is already shared with it: %w", to, ErrTransition)
	}
	id := newID()
	p := &plan{op: "refer", entry: id}
	p.put(KindReferral, id, "clinic", to)
	if o.Reason != "" {
		p.put(KindReferral, id, "reason", o.Reason)
	}
	p.put(KindReferral, id, "status", StatusActive)
	if err := p.putExternalID(KindReferral, id, o.ExternalID); err != nil {
		return nil, err
	}
	p.summary = fmt.Sprintf("Referred to %s", to)
	if o.Reason != "" {
		p.summary += ": " + o.Reason
	}
	return p, nil
}

// EndReferral stops sharing the chart with a referred clinic. Its devices
// keep what they already received but get no further changes.
type EndReferral struct {
	ReferralID string
	Reason     string
}

func (o EndReferral) plan(s *state, at time.Time) (*plan, error) {
	e, err := s.find(KindReferral, o.ReferralID)
	if err != nil {
		return nil, err
	}
	if st := e.value("status"); st != StatusActive {
		return nil, transition("end referral", st)
	}
	p := &plan{op: "end-referral", entry: e.id}
	p.put(KindReferral, e.id, "status", StatusEnded)
	if o.Reason != "" {
		p.put(KindReferral, e.id, "status_reason", o.Reason)
	}
	p.summary = fmt.Sprintf("Ended the referral to %s", e.value("clinic"))
	return p, nil
}

// Referral is a clinic the chart is shared with.
type Referral struct {
	ID           string `json:"id"`
	Clinic       string `json:"clinic"`
	Reason       string `json:"reason,omitempty"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	// ExternalID is the referral's identifier in another system, if any.
	ExternalID *Identifier `json:"external_id,omitempty"`
	Recorded
}

// scope is every clinic the chart is shared with: each home clinic value
// still current (two while a concurrent change of home clinic is
// unresolved) and each active referral. Sorted, without duplicates.
func (s *state) scope() []string {
	return scopeOf(s.patient(), slices.Values(s.entriesOf(KindReferral)))
}

// scopeOf is the scope of a chart whose patient entry is patient and
// whose referral entries are referrals.
func scopeOf(patient *entry, referrals iter.Seq[*entry]) []string {
	var out []string
	if r := patient.fields["home_clinic"]; r != nil {
		for _, w := range r.current {
			out = append(out, w.Value)
		}
	}
	for e := range referrals {
		if e.value("status") == StatusActive {
			out = append(out, e.value("clinic"))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Scope returns the clinics whose devices may hold and edit the chart: its
// home clinic and every clinic with an active referral.
func (c *Chart) Scope() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return nil, err
	}
	return s.scope(), nil
}

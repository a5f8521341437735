package record

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Section is a part of a chart that a role may or may not change. Every
// field of every entry belongs to exactly one section (see the package
// documentation for the table of who may change what).
type Section string

// Sections.
const (
	// SectionDemographics is the patient's identity and contact details,
	// home clinic included; registering a patient writes it.
	SectionDemographics Section = "demographics"
	// SectionAllergies is the allergy list and the "no known allergies"
	// statement.
	SectionAllergies Section = "allergies"
	// SectionDiagnoses is the problem list.
	SectionDiagnoses Section = "diagnoses"
	// SectionPrescriptions is the medication list.
	SectionPrescriptions Section = "prescriptions"
	// SectionLabResults is lab results and their corrections.
	SectionLabResults Section = "lab-results"
	// SectionEncounters is visits: complaint, vitals and the note.
	SectionEncounters Section = "encounters"
	// SectionReferrals is the clinics the chart is shared with.
	SectionReferrals Section = "referrals"
)

// sections are the sections of the entry kinds (entryKinds), in the
// order of the permission table.
var sections = kindSections()

// Sections returns every section, in the order of the permission table.
func Sections() []Section { return slices.Clone(sections) }

// Roles returns every role, in the order of the permission table.
func Roles() []Role { return slices.Clone(roles) }

// permissions is the matrix documented in doc.go: the sections each role
// may change. Reading is not restricted here.
var permissions = map[Role][]Section{
	RoleClinician: sections,
	// A nurse runs much of a rural clinic: registers patients, records
	// allergies, vitals and notes, takes point-of-care tests, prescribes
	// under standing orders and refers; a diagnosis is a clinician's
	// call.
	RoleNurse: {SectionDemographics, SectionAllergies, SectionPrescriptions, SectionLabResults,
		SectionEncounters, SectionReferrals},
	// A lab technician records, finalises and corrects lab results, and
	// nothing else.
	RoleLabTechnician: {SectionLabResults},
	// A registration clerk keeps who the patient is and where the chart
	// is shared; nothing clinical.
	RoleRegistrationClerk: {SectionDemographics, SectionReferrals},
	// A community health worker registers patients in the village,
	// records the allergies a family reports, and visits with vitals and
	// notes; not diagnoses, prescriptions or lab results.
	RoleCommunityHealthWorker: {SectionDemographics, SectionAllergies, SectionEncounters},
	// An administrator keeps demographics and referrals (the chart's
	// scope) in order. Marking a clinical entry entered in error is a
	// clinical judgement and needs that entry's section.
	// Merging duplicate charts (and unmerging them) is identity
	// management: a clinician's or an administrator's, not a nurse's or
	// a clerk's, since it changes which clinical entries a chart shows.
	RoleAdministrator: {SectionDemographics, SectionReferrals, SectionMerges},
}

// Permitted reports whether role may change section s: add, edit, correct,
// resolve conflicts in, or mark entered in error the entries of s. An
// unknown role or section is permitted nothing.
func Permitted(role Role, s Section) bool {
	return slices.Contains(permissions[role], s)
}

// ErrForbidden is matched by every *ForbiddenError: the author's role may
// not change a section the operation or change touches.
var ErrForbidden = errors.New("record: role may not change this section")

// ForbiddenError names the role and the first section it may not change.
type ForbiddenError struct {
	Role    Role
	Section Section
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("record: a %s may not change %s", e.Role, e.Section)
}

// Is makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// authorize returns a *ForbiddenError for the first of ss that role may
// not change.
func authorize(role Role, ss []Section) error {
	for _, s := range ss {
		if !Permitted(role, s) {
			return &ForbiddenError{Role: role, Section: s}
		}
	}
	return nil
}

// addSection adds s to a sorted set of sections.
func addSection(ss []Section, s Section) []Section {
	i, found := slices.BinarySearch(ss, s)
	if found {
		return ss
	}
	return slices.Insert(ss, i, s)
}

// sections returns the sections the plan writes, sorted: those of its
// field writes, and that of the entry whose note it creates or edits.
func (pl *plan) sections() []Section {
	var ss []Section
	for _, w := range pl.sets {
		s, ok := sectionOf(w.kind, w.field)
		if !ok {
			// Unreachable for this package's plans; refuse rather than
			// let an unknown kind through.
			s = Section("unknown kind " + w.kind)
		}
		ss = addSection(ss, s)
	}
	if pl.newNote || pl.splice {
		s, ok := noteSection(pl.noteKind)
		if !ok {
			// Unreachable for this package's plans, as above.
			s = Section("no note in kind " + pl.noteKind)
		}
		ss = addSection(ss, s)
	}
	return ss
}

// Sections returns the sections op would write if it were done on the
// chart now at time at, sorted, without writing anything: what a screen needs to
// offer an operation only to the roles that may make it. Errors are Do's
// (ErrInvalid, ErrNotFound, ErrTransition), never ErrForbidden.
func (c *Chart) Sections(at time.Time, op Op) ([]Section, error) {
	if v := reflect.ValueOf(op); op == nil || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return nil, invalid("op", "no operation")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.state()
	if err != nil {
		return nil, err
	}
	pl, err := op.plan(s, at)
	if err != nil {
		return nil, err
	}
	return pl.sections(), nil
}

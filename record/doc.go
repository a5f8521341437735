// Package record is the patient chart: demographics, allergies, diagnoses,
// prescriptions, lab results and encounters, kept in a crdt.Doc that any
// number of devices edit offline and merge.
//
// # Usage
//
//	chart, res, err := record.New(uuid.NewString(), crdt.NewActorID(), nurse, time.Now(), record.Register{
//		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
//		HomeClinic: "kamuga-dispensary",
//	})
//	res, err = chart.Do(nurse, time.Now(), record.Prescribe{Drug: "Amoxicillin", Dose: 500,
//		DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
//	v, err := chart.View() // plain Go; encodes to JSON
//
// Every write is a typed operation (an Op: Prescribe, Discontinue,
// CorrectLabResult, MarkEnteredInError, ...). It is validated against the
// chart before anything is written — required fields, plausible values and
// units, legal status transitions — and a bad one returns an error matching
// ErrInvalid (a *ValidationError naming the field), ErrNotFound,
// ErrTransition or ErrForbidden (see "Who may change what"), with the
// chart unchanged. Each operation is one change
// recording who made it (user, role, device) and when; View.History lists
// the changes in words.
//
// # Clocks
//
// Checks that depend on today's date (a birth date or estimated birth
// year not after this year, a diagnosis onset, specimen or encounter not
// in the future) take today as the latest of the device's clock (the time
// given to Do or New), the chart's latest change as its writes record it,
// and ReleaseDate, a day this release of the software is known to run
// after. So a device whose clock was reset to 1970 still edits a patient
// born in 1990, and a device whose clock is behind another's still takes
// a value that was plausible there. The clock is reported wrong when it
// reads a time before ReleaseDate, or more than a day before the chart's
// latest change: the edit is made all the same (carrying the clock's time,
// which is what the device says), and its Result.Clock is a *ClockError
// (ErrClock) for the app to show, so that someone sets the clock; a value
// refused even against that reference is refused with a ValidationError
// that names the clock as well as the field, and an encounter needs its
// date given rather than taken from the wrong clock. A clock ahead of the
// true time cannot be told from a chart left alone for a while: its edits
// are made, dates up to its time are not refused as future, and once the
// clock is set right the chart's latest change, "in the future", is the
// reference, with Result.Clock saying one of the two clocks is wrong.
//
// # How a chart is stored
//
// Every entry has a UUID, so concurrent additions never collide. Every
// field of every entry is a multi-value register: a write is a small JSON
// record (value, author, role, device, time, and the IDs of the writes it
// supersedes) stored under its own UUID. A field's current values are the
// writes nothing supersedes. A new write supersedes all current values the
// writer could see. Every value ever written stays in the document, for
// audit. Encounter notes are collaborative text.
//
// # Clinical merge rules
//
//  1. Concurrent additions are all kept: two prescriptions, two lab
//     results, two allergies recorded on different devices are all in the
//     merged chart.
//  2. Concurrent edits to different fields of one entry both apply (a new
//     dose on one device, new instructions on another).
//  3. Concurrent different values for one field converge, and the chart
//     reports a Conflict naming every competing value with its author and
//     time, until someone writes a value having seen them all (any edit of
//     the field, or ResolveConflict). Every replica shows the same value
//     meanwhile: the latest write, ties broken by write ID. This holds for
//     dose, frequency, allergy severity, demographics and every other
//     non-status field.
//  4. Concurrent status changes resolve by clinical precedence, never by
//     actor or clock (the conflict is still listed, marked Automatic):
//     - prescription: entered-in-error > stopped > completed > on-hold > active
//     - allergy: entered-in-error > active > inactive > resolved
//     - lab result: entered-in-error > corrected > final > preliminary
//     - encounter: entered-in-error > recorded
//     - patient identifier: entered-in-error > inactive > active
//     - diagnosis clinical status, the codes of FHIR R4
//     Condition.clinicalStatus: relapse > recurrence > active >
//     remission > inactive > resolved. Why: a problem one device still
//     sees is kept visible until someone who has seen both says
//     otherwise; of the active states, a relapse (back after a
//     remission) and a recurrence (back after it resolved) say more
//     than active; of the others, remission (may come back) and inactive
//     keep the problem in mind longer than resolved.
//     - diagnosis verification, the codes of FHIR R4
//     Condition.verificationStatus: entered-in-error > confirmed >
//     provisional > differential > unconfirmed > refuted. Why: a
//     recording mistake wins everywhere (rule 5); otherwise the surer
//     diagnosis is kept in view (confirmed, then provisional, the
//     likeliest, then differential, one of several, then unconfirmed,
//     which FHIR makes the parent of those two), and refuted, which
//     drops the problem from consideration, only wins alone. The
//     clinical status of a diagnosis entered in error no longer counts
//     (FHIR gives it none): it is listed in View.EnteredInError.
//     Stored values were FHIR's codes from the first schema on, so
//     none needed mapping.
//     - an allergy recorded concurrently with "no known allergies" wins:
//     NoKnownAllergies is false while any allergy is active, and an
//     allergy-status alert asks the clinician to confirm.
//     A later change that had seen the earlier ones simply supersedes them.
//  5. Nothing is deleted: MarkEnteredInError hides an entry from the lists
//     of a View and shows it in View.EnteredInError; the entry and all its
//     values stay in the document and the history. A corrected lab result
//     keeps its earlier values in LabResult.Previous.
//  6. After a merge the View raises Alerts: the same drug active twice
//     (duplicate-drug: one drug of the drug dictionary, whatever name,
//     spelling or brand it is prescribed by, so "Panadol" and
//     "Acetaminophen 500 mg" match; for a drug the dictionary does not
//     know, the same substance whatever the case, accents, strength,
//     dose form or salt in its name, or the same drug code), two active
//     drugs of one ATC level-4 class or of one group of cross-reacting
//     drugs (duplicate-class, a warning: amoxicillin and ampicillin),
//     an active or on-hold prescription for a drug the patient is
//     allergic to (allergy-drug: see "Drug dictionary"), and a critical
//     lab value (critical-lab).
//  7. Alerts count every value competing in a conflict, not only the one
//     shown: a critical lab value, an allergy's substance or a drug's
//     name or code that would raise an alert raises it, marked
//     InConflict and saying so, until someone settles the conflict
//     (Hb 9.1 corrected to 6.0 on one device and to 10.5 later on
//     another shows 10.5, low, and a critical-lab alert for the 6.0).
//     Statuses are settled by their precedence: the status shown counts.
//
// # Drug dictionary
//
// The package ships a drug dictionary (DrugDictionary; the file
// data/drugs.txt, parsed by ParseDictionary): the WHO ATC code of every
// medicine of the WHO Model List of Essential Medicines that has a
// level-5 code and of other common ones, with spellings and brand names
// (paracetamol, acetaminophen, Panadol, Tylenol: N02BE01), the groups of
// drugs that cross-react (penicillins: every J01C code; sulfonamides:
// co-trimoxazole, sulfadiazine, sulfadoxine, sulfasalazine, but no
// sulfate salt) and the ATC classes whose members are given together by
// design (two NRTIs of an antiretroviral regimen, the drugs of a
// tuberculosis regimen), which are not duplicate therapy.
//
// Prescribe records the drug as written and, when the dictionary finds it
// by any of its names, its ATC code (Prescription.ATC, Substance); a drug
// it does not know is recorded all the same and shown Uncoded, and its
// checks go by its name as before. Duplicate therapy is the same drug or
// the same ATC level-4 class or group; an allergy rules out the same
// drug, a combination holding it, and the drugs of its group (an allergy
// to penicillin or to amoxicillin rules out co-amoxiclav and
// flucloxacillin; a sulfonamide allergy rules out co-trimoxazole, not
// ferrous sulfate). An allergy the dictionary cannot read ("peanuts")
// and a drug it does not know are compared by name and the small class
// table.
//
// A change received from another replica may carry an ATC code: CheckChange
// and Checker refuse one that is not a well-formed level-5 code with
// ErrInvalid, and accept a well-formed code this dictionary does not
// know, since a newer dictionary on the device that wrote it may know it.
// Such a code is shown, counts for duplicates of the same code, and is
// treated as uncoded for classes, groups and allergies, which then go by
// the drug's name. Views are computed with the dictionary of the library
// that computes them: replicas running different versions may differ in
// Substance and in the alerts a drug raises.
//
// # Lab results
//
// A result is numeric (Value, Unit, the numeric reference and critical
// ranges give low, normal, high or critical) or text (TextValue). A text
// result is interpreted only by the rules it states: critical when its
// text is one of CriticalTexts, abnormal when one of AbnormalTexts,
// normal when it equals the text reference range RefText ("negative",
// "<1000 copies/mL"), compared ignoring case and spaces; any other text
// is not interpreted. A critical text raises the critical-lab alert as a
// critical number does, competing in a conflict too. A LOINC code must
// carry its mod-10 check digit (ValidLOINC).
//
// # Identifiers
//
// A patient carries a list of identifiers (Patient.Identifiers), each a
// system and a value and an entry of the chart of its own, in the
// demographics section: AddIdentifier, CorrectIdentifier,
// RemoveIdentifier (inactive: no longer in use) and MarkEnteredInError
// change them, and Register may give the first ones. Identifiers added
// on two devices are both kept; concurrent corrections of one are a
// conflict like any other field's. Values are checked and stored in a
// canonical form (CanonicalIdentifier), so that equal identifiers are
// equal strings:
//
//	system       checked                                        stored as
//	aadhaar      12 digits, first 2-9, Verhoeff check digit     digits only
//	abha         14 digits (ABHA number; no check digit known)  digits only
//	national-id  letters and digits, at most 32                 upper case, no spaces or hyphens
//	clinic       as national-id                                 as national-id
//	phone        5 to 15 digits, optional leading +             digits and +
//	other        a lower-case name or URI; the value 1-100      trimmed
//	             printable characters without "|"
//
// A patient has at most one active Aadhaar, ABHA or national ID number.
// Every other entry (allergy, diagnosis, prescription, lab result,
// encounter, referral) may carry an external identifier (ExternalID),
// such as the ID an imported record had where it came from. CheckChange
// and Checker hold identifiers received from elsewhere to the same
// checks. Package record/identity turns patients into search keys and
// finds likely duplicate registrations.
//
// # Who may change what
//
// Every field of every entry belongs to a Section, and a role may change
// only the sections the matrix below allows (Permitted). Changing a
// section includes adding to it, correcting it, resolving its conflicts
// and marking its entries entered in error; reading is not restricted
// here. Settling a conflict is a write of the field in conflict: a role
// that may not write the field's section may not settle it, and is
// refused with the ForbiddenError a write would get, by Chart.Do and,
// for a change made elsewhere, by CheckChange and Checker. Registering a patient writes the demographics; "no known
// allergies" belongs to the allergies; an encounter's vitals and note to
// the encounters.
//
//	role                     demographics allergies diagnoses prescriptions lab-results encounters referrals merges
//	clinician                     yes        yes       yes         yes          yes         yes        yes     yes
//	nurse                         yes        yes        -          yes          yes         yes        yes      -
//	lab-technician                 -          -         -           -           yes          -          -       -
//	registration-clerk            yes         -         -           -            -           -         yes      -
//	community-health-worker       yes        yes        -           -            -          yes         -       -
//	administrator                 yes         -         -           -            -           -         yes     yes
//
// Why: a diagnosis is a clinician's call; a nurse in a rural clinic
// prescribes under standing orders, runs point-of-care tests and refers.
// A lab technician records, finalises and corrects lab results only. A
// registration clerk and an administrator keep who the patient is and
// which clinics share the chart, nothing clinical (so an administrator
// cannot mark a clinical entry entered in error). A community health
// worker registers patients in the village, records the allergies a
// family reports and visits with vitals and notes, but neither diagnoses
// nor prescribes.
//
// The sections an operation touches are worked out from the writes it
// plans, never from a list of operations, and New and Chart.Do refuse an
// author whose role may not change one of them with ErrForbidden (a
// *ForbiddenError naming the role and section), the chart unchanged;
// Chart.Sections tells a screen beforehand. A change received from
// another replica is checked with CheckChange, which applies it to a copy
// of the chart as it was made, finds the sections its writes and note
// edits actually modify, and checks them against the role its message
// records, refusing as well changes this package would never make
// (including one that names objects or operations the chart it was made
// on does not hold, which replicas could apply differently). A replica
// receiving a run of changes to one chart judges them with a Checker
// instead: the same verdicts, at the cost of each change rather than of
// the chart for every change that follows what it already holds.
//
// # Users and what they may read
//
// A clinic's user roster is a document of its own (Users, at UsersID of
// the clinic, so every device finds the same one): each user's name, role,
// argon2id password hash (package device/login makes and checks them) and
// whether they are disabled, and per role the chart sections it may not
// read (a ReadPolicy, for example no encounter notes for registration
// clerks). Only an administrator the roster knows changes it, except that
// a user may change their own password; the first administrator starts
// it. CheckUsersChange judges a roster change from another replica as
// CheckChange judges a chart change. ReadPolicy.Redact gives the view a
// role may read: no word of a hidden section, in the lists, conflicts,
// alerts or history, and View.Hidden says what was left out.
//
// # Merging duplicate charts
//
// One patient registered twice (at two clinics, offline) has two charts;
// a clinician or an administrator (the merges section) merges chart B
// into chart A. Both documents keep their entries and histories: a merge
// only writes, in B, its forwarding pointer (MergeInto: the patient's
// merged_into field, a write like any other) and, in A, a merge entry
// naming B (Absorb; Release and Unmerge undo them). Package replica's
// Merge writes both, with referrals so that each chart is shared with
// the other's clinics. Which charts are shown together is decided by the
// pointers alone (Survivor): A's view is A with the entries of every
// chart whose pointers lead to it (Combine), so an edit made offline to
// B after the merge is in B's document and shown with A; A's merge
// entries only say where to look. Concurrent merges resolve the same way
// on every replica:
//   - B into A and B into C: B's pointer is an ordinary field conflict,
//     shown by the usual rule (the latest write), listed in Conflicts and
//     raising a merge-conflict alert in both survivors' views until a
//     merge or unmerge settles it;
//   - A into B and B into A: a cycle, whose survivor is the chart with
//     the smallest ID (a merge-conflict alert says so);
//   - a merge entry whose chart forwards elsewhere raises the alert too.
//
// Combine works out alerts over all the charts shown (an allergy recorded
// in one against a prescription in the other). The pointer is checked
// like any field (a chart ID); a change pointing a chart at itself is
// harmless (a cycle of one).
//
// # Scope
//
// A chart belongs to its home clinic and to every clinic it is referred to
// (Refer, EndReferral); Chart.Scope lists them, and a sync server sends a
// clinic's devices only the charts in its scope. While a concurrent change
// of home clinic is unresolved, both clinics are in scope.
//
// # Caveats
//
// Views are computed from the whole document; a chart with thousands of
// changes takes milliseconds to view, and CheckChange, which forks and
// reads the whole document, tens of milliseconds per change. A Checker
// reads the chart once (NewChecker: about half a second for 10,000
// changes), then judges each change that follows everything it holds in
// tens of microseconds, whatever the chart's size; changes on concurrent
// branches, and every change it would refuse, still cost a CheckChange.
// It keeps its own copy of the chart, to which it applies the changes it
// accepted only when it next needs the document (until then it keeps a
// copy of their bytes); Checker.Rest and Resume let a caller that holds
// the chart with those changes spare both, and NewCheckerOn starts a
// Checker that way, reading the caller's chart without copying it. The
// role CheckChange trusts is the
// one the change's message records: signatures (package replica) prove
// which device made a change, not which person, so a modified client on
// an enrolled device can claim any role. A read policy is applied where a
// chart is shown; the device still holds the whole chart. Writes from changes not made through
// this package are ignored and counted in View.Unreadable. The drug
// dictionary and its groups are a safety net, not a drug-interaction
// database: a drug it does not know is matched by name, which is a
// heuristic, and a code of another system (DrugCode) is compared as
// written. The dictionary was compiled by hand (see README.md) and may
// hold mistakes.
package record

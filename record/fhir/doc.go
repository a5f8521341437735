// Package fhir maps patient charts (package record) to and from FHIR R4:
// a chart exports as a Bundle, and a Bundle imports into a new chart or
// an existing one. Resources are the protocol-buffer model of
// github.com/google/fhir/go, and JSON goes through its jsonformat
// package, whose R4 validation every exported bundle passes and every
// imported one must pass.
//
// # Usage
//
//	v, err := chart.View()
//	data, err := fhir.ExportJSON(v) // a Bundle of type collection
//
//	b, err := fhir.Decode(data) // errors match ErrMalformed
//	res, err := fhir.Import(ctx, replica, chartID, clinician, homeClinic, b)
//	// chartID "" registers a new chart; res.Unknown and res.Skipped
//	// say what was not imported, and why.
//
// A *replica.Replica is an import Target; Memory is one over charts held
// in memory. Callers find the chart a bundle belongs to themselves, by
// Bundle.PatientID (a chart's own export) or Bundle.Identifiers (a chart
// an import created carries its Patient's "Patient/id" as an identifier
// in SystemResource, so the same bundle finds it again).
//
// # The mapping
//
//	record              FHIR R4
//	chart, Patient      Patient (id = chart ID); identifiers, name, gender,
//	                    birthDate (a year alone for an estimated birth year),
//	                    telecom (phone), address (line = address, city =
//	                    village), contact (guardian), managingOrganization
//	                    (home clinic, by identifier in SystemClinic)
//	no known allergies  AllergyIntolerance coded SNOMED CT 716186003
//	Allergy             AllergyIntolerance: code.text, clinicalStatus,
//	                    criticality and reaction.severity (mild, moderate:
//	                    low; severe, life-threatening: high, severe), and
//	                    record's own severity in an extension
//	Diagnosis           Condition: ICD-10 coding and text, clinicalStatus
//	                    and verificationStatus (the same codes), onset, note
//	Prescription        MedicationRequest: status (the same codes), intent
//	                    order, medicationCodeableConcept with the drug as
//	                    written in text and its ATC code as a coding
//	                    (SystemATC; an uncoded drug is text only), dosage
//	                    (dose, route and frequency as text, start and end
//	                    as bounds), expected supply duration, statusReason
//	LabResult           Observation (category laboratory): LOINC coding and
//	                    text, valueQuantity or valueString, referenceRange
//	                    (normal: low, high, text; type "critical": the
//	                    critical bounds), interpretation (v3: L, N, H, LL,
//	                    HH, A, AA), status, effective = specimen time
//	Encounter           Encounter (class AMB, status finished): period
//	                    start, reasonCode (complaint), participant
//	                    (clinician), the note in an extension; each vital
//	                    sign an Observation (category vital-signs, LOINC)
//	                    referring to it
//	who changed what    Provenance per resource (see below)
//
// Identifier systems map to these URIs: aadhaar to SystemAadhaar
// (https://uidai.gov.in), abha to SystemABHA
// (https://healthid.ndhm.gov.in, as ABDM's FHIR profiles name it);
// national-id, clinic, phone and any other plain name to
// IdentifierSystemPrefix + name (urn:chartsync:identifier:national-id);
// a system that is already a URI stays as it is. An inactive identifier
// has use "old". Users, devices and clinics are named by identifiers in
// SystemUser, SystemDevice and SystemClinic; what FHIR R4 has no element
// for is carried in extensions under
// https://chartsync.github.io/fhir/StructureDefinition/.
//
// # Provenance and conflicts
//
// Each resource has a Provenance for its entry's latest change: recorded
// and occurred are the change's time, the first agent is the user (type
// author, the role as agent.role), the second the device (type
// assembler), and activity the change in words from the chart's history.
// An unsettled conflict is exported as extensions on the resource
// (ExtConflict, one per competing value: the field, the value, its
// author, role, device, time, and whether it is the value shown), not as
// a Provenance per competing value. Why: a Provenance tells of an
// activity on a version of a resource, and a competing value is not a
// version FHIR can point to (a resource version has one value per
// element), so the value itself would have to travel in an extension
// anyway; on the resource, it sits beside the element it competes for, a
// reader that ignores extensions sees the value every replica shows, and
// each resource keeps one Provenance.
//
// # Import
//
// Import goes through record's operations, as the importing user: the
// chart's validation and the role's permissions apply to every write
// (a lab technician imports lab results, not prescriptions). Entries are
// matched by external ID: a new entry imported from a resource carries
// the resource's first identifier as its ExternalID, or "Type/id" in
// SystemResource when it has none, and a chart's own export matches its
// entries by ID. A matched entry is changed only where the bundle
// differs and an operation exists (an allergy's reaction, severity and
// status; a diagnosis's statuses; a prescription's dose and status; a lab
// result's value, through a correction, and finalisation; entered in
// error); other differences are left as the chart has them. Importing
// the same bundle twice makes no change the second time. Demographics
// are updated where the bundle gives a different value, never the home
// clinic. Resources of other types are listed in Result.Unknown, and
// resources read but not written (a cancelled order, a refuted allergy,
// a result without a value) in Result.Skipped.
//
// # What FHIR does not carry
//
// Importing a chart's export into a new chart gives the same view except:
//   - entry and chart IDs, which the new chart makes (each entry keeps
//     where it came from as its ExternalID, the patient as an identifier
//     in SystemResource), and the order of identifiers registered
//     together;
//   - who recorded each entry and when, and the history: the import is
//     the importing user's change (Provenance is exported, not imported);
//   - unsettled conflicts: exported as extensions, imported as the value
//     shown;
//   - a corrected lab result's earlier values and reason: it imports as a
//     final result with its current value;
//   - entries entered in error: exported with that status and their
//     label only, reported in Skipped and not created;
//   - the reason of an active prescription's last change, referrals,
//     alerts (computed again), and what a read policy hid.
//
// # Caveats
//
// Import tries every addition on a scratch chart before writing, so a
// bundle record would refuse fails with the chart unchanged; a change to
// an entry the chart holds (a status change) is checked by record only
// when it is written, and a refusal there leaves the earlier writes of
// the import in place (importing again completes it). An entry entered
// in error is matched only by its ID, as record's view does not keep its
// external ID. Decode refuses bundles over MaxBundleSize.
package fhir

package fhir

// Internals under test.
var (
	FHIRSystem   = fhirSystem
	RecordSystem = recordSystem
)

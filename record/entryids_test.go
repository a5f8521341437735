package record_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/record"
)

func TestViewEntryIDs(t *testing.T) {
	v := record.View{
		Allergies:      []record.Allergy{{ID: "a1"}},
		Diagnoses:      []record.Diagnosis{{ID: "d1"}, {ID: "d2"}},
		Prescriptions:  []record.Prescription{{ID: "p1"}},
		LabResults:     []record.LabResult{{ID: "l1"}},
		Encounters:     []record.Encounter{{ID: "e1"}},
		EnteredInError: []record.ErrorEntry{{ID: "x1"}},
	}
	tests := []struct {
		inError bool
		want    []string
	}{
		{false, []string{"a1", "d1", "d2", "p1", "l1", "e1"}},
		{true, []string{"a1", "d1", "d2", "p1", "l1", "e1", "x1"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, v.EntryIDs(tt.inError), "inError %v", tt.inError)
	}
	assert.Empty(t, record.View{}.EntryIDs(true))
}

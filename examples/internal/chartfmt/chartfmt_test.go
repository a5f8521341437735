package chartfmt

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/record"
)

func TestPrintShowsHowEachDrugIsCoded(t *testing.T) {
	tests := []struct {
		name string
		rx   record.Prescription
		want string
		not  string
	}{
		{"coded", record.Prescription{ID: "rx1", Drug: "Amoxil", ATC: "J01CA04", Substance: "amoxicillin"}, "Amoxil (J01CA04 amoxicillin)", "[uncoded]"},
		{"code unknown to this dictionary", record.Prescription{ID: "rx2", Drug: "Newdrug", ATC: "J01ZZ99"}, "Newdrug (J01ZZ99)", "[uncoded]"},
		{"free text", record.Prescription{ID: "rx3", Drug: "grandmother's tea", Uncoded: true}, "grandmother's tea [uncoded]", "tea ("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			Print(&b, record.View{ChartID: "c1", Prescriptions: []record.Prescription{tt.rx}}, "")
			assert.Contains(t, b.String(), tt.want)
			rxLine := ""
			for _, l := range bytes.Split(b.Bytes(), []byte("\n")) {
				if bytes.Contains(l, []byte(tt.rx.Drug)) {
					rxLine = string(l)
				}
			}
			assert.NotContains(t, rxLine, tt.not)
		})
	}
}

package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzParseRecord: the line decoder never panics, accepts only what
// appendRecord writes (the same bytes come back), and what it accepts
// encoding/json reads as the same entry.
func FuzzParseRecord(f *testing.F) {
	var prev hash
	e := Entry{Seq: 1, Time: time.Date(2025, 3, 4, 9, 30, 0, 5, time.UTC), Action: Refused, Device: "0a1b",
		Clinic: `nyeri "east"`, User: `u\1`, Role: "nurse", Chart: "c-1", Changes: 3, Detail: "ñ — 患者"}
	line := appendRecord(nil, &e, &prev)
	f.Add(line)
	prev[0] = 0xab
	e.Seq, e.Time, e.Action, e.Detail, e.Changes = 12345678901234, time.Time{}, Read, "", 0
	f.Add(appendRecord(nil, &e, &prev))
	f.Add(bytes.Replace(line, []byte(`"changes":3`), []byte(`"changes":03`), 1))
	f.Add(bytes.Replace(line, []byte(`\"east\"`), []byte(`\u0022east\u0022`), 1))
	f.Add([]byte(`{"seq":1,"time":"x"}`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, line []byte) {
		e, prev, reason := parseRecord(line)
		if reason != "" {
			return
		}
		if again := appendRecord(nil, &e, &prev); !bytes.Equal(again, line) {
			t.Fatalf("decoded record does not encode to its line:\n%q\n%q", line, again)
		}
		if field, why := e.check(); field != "" {
			t.Fatalf("decoded an entry Append would refuse: %s %s", field, why)
		}
		var j Entry
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("encoding/json cannot read an accepted record: %v", err)
		}
		if j != e {
			t.Fatalf("encoding/json reads %+v, the decoder %+v", j, e)
		}
	})
}

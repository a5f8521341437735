package httpsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// AccessLog records which device (and, for writes, which user) read or
// wrote which chart. *audit.Log is one; Append must be durable when it
// returns nil and safe for concurrent use.
type AccessLog interface {
	Append(ctx context.Context, entries ...audit.Entry) error
}

// errAccessLog is a failure to record a sync in the access log: the sync
// fails with 500 and nothing of it is stored or sent.
var errAccessLog = errors.New("access log unavailable")

// writeEntries returns the charts whose changes the device sent and the
// cloud is about to store: one entry per chart and author, and one more
// for each merge operation (merging charts, or undoing a merge), whose
// detail names it.
func writeEntries(dev Device, rec replica.Received) []audit.Entry {
	type key struct{ chart, user, role, op string }
	writes := map[key]int{}
	var order []key
	for _, c := range rec.Changes {
		k := key{c.Chart, c.Author.UserID, string(c.Author.Role), ""}
		if record.IsMergeOperation(c.Op) {
			k.op = c.Op
		}
		if writes[k] == 0 {
			order = append(order, k)
		}
		writes[k]++
	}
	entries := make([]audit.Entry, 0, len(order))
	for _, k := range order {
		entries = append(entries, audit.Entry{Action: audit.Write, Device: dev.Replica, Clinic: dev.Clinic,
			User: k.user, Role: k.role, Chart: k.chart, Changes: writes[k], Detail: k.op})
	}
	return entries
}

// readEntries returns the charts whose changes the cloud sends the device.
func readEntries(dev Device, out replica.Outgoing) []audit.Entry {
	read := make([]string, 0, len(out.Charts))
	for chart := range out.Charts {
		read = append(read, chart)
	}
	slices.Sort(read)
	entries := make([]audit.Entry, 0, len(read))
	for _, chart := range read {
		entries = append(entries, audit.Entry{Action: audit.Read, Device: dev.Replica, Clinic: dev.Clinic,
			Chart: chart, Changes: out.Charts[chart]})
	}
	return entries
}

// refusedEntry records a bundle the cloud refused (forged, unauthorised
// or out of scope changes); the chart is not known, so it is "*".
func refusedEntry(dev Device, code, msg string) audit.Entry {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	return audit.Entry{Action: audit.Refused, Device: dev.Replica, Clinic: dev.Clinic, Chart: "*", Detail: fmt.Sprintf("%s: %s", code, msg)}
}

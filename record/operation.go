package record

import (
	"github.com/chartsync/chartsync/crdt"
)

// OperationOf reads the operation a change's commit message names
// ("register", "prescribe", "merge-into" …), without judging the change
// (the message is the author's claim; CheckChange judges what the change
// does); "" if the message names none.
func OperationOf(ch crdt.Change) string {
	msg, err := parseMessage(ch.Message)
	if err != nil {
		return ""
	}
	return msg.Op
}

// IsMergeOperation reports whether op is one of the operations that merge
// charts or undo a merge (on the chart merged away, and on the chart that
// absorbs it), which an access log records as such.
func IsMergeOperation(op string) bool {
	switch op {
	case "merge-into", "unmerge", "absorb", "release":
		return true
	}
	return false
}

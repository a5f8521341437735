package gate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// Refusal codes: why a sender's bundle was refused, the same whatever
// courier brought it. HTTPS sends them as the "error" member of its error
// answers; the access log records them in a refused entry's Detail.
const (
	// The bundle could not be read: damaged, truncated, or holding a
	// change the replica cannot take (a sequence number used twice).
	CodeMalformed = "malformed-bundle"
	// The bundle's format version is one this replica does not read.
	CodeVersion = "unsupported-version"
	// The bundle is addressed to another replica.
	CodeWrongRecipient = "wrong-recipient"
	// The bundle is over the replica's size limit.
	CodeTooLarge = "too-large"
	// The bundle names another sender than the one the courier
	// authenticated.
	CodeWrongSender = "wrong-sender"
	// The bundle changes a chart outside the sender's clinic's scope.
	CodeOutOfScope = "out-of-scope"
	// A change's recorded role may not change what it changes.
	CodeUnauthorizedChange = "unauthorized-change"
	// A change is not signed by the device it names.
	CodeForgedChange = "forged-change"
	// A change of a revoked device made after its revocation.
	CodeRevokedChange = "revoked-change"
	// The sender's device was revoked by the administrator.
	CodeRevokedCredential = "revoked-credential"
	// A change reuses a sequence number its author used for another
	// change: the author is a copied or restored data folder writing as
	// its original (replica.ErrForkedReplica). ForkedReplica names it;
	// when that is the sender, the sender is the copy and must be
	// recovered as a new replica.
	CodeForked = "forked"
)

// CodeOf returns the refusal code of an error from Receive, Answer or
// Sync: why the sender's bundle was refused, for what it holds or who
// sent it. It returns "" for the gate's and the replica's own failures
// (a store or access log failure, a replica shutting down, admission),
// which are no fault of the sender's.
func CodeOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, replica.ErrBundleTooLarge):
		return CodeTooLarge
	case errors.Is(err, replica.ErrBundleVersion):
		return CodeVersion
	case errors.Is(err, replica.ErrWrongRecipient):
		return CodeWrongRecipient
	case errors.Is(err, replica.ErrForkedReplica):
		// Before ErrMalformedBundle, which it also matches: the bundle
		// is well formed, its author is a copy.
		return CodeForked
	case errors.Is(err, replica.ErrMalformedBundle), errors.Is(err, crdt.ErrInvalidChange), errors.Is(err, crdt.ErrMalformed):
		// A change Automerge will not take (a sequence number used
		// twice, say) is the sender's fault whatever wraps it: taken
		// for the replica's own failure, it would be sent again for
		// ever.
		return CodeMalformed
	case errors.Is(err, replica.ErrWrongSender):
		return CodeWrongSender
	case errors.Is(err, replica.ErrOutOfScope):
		return CodeOutOfScope
	case errors.Is(err, replica.ErrUnauthorizedChange):
		return CodeUnauthorizedChange
	case errors.Is(err, replica.ErrRevokedChange):
		// Before ErrForgedChange, which it also matches.
		return CodeRevokedChange
	case errors.Is(err, replica.ErrForgedChange):
		return CodeForgedChange
	case errors.Is(err, ErrRevoked):
		return CodeRevokedCredential
	}
	return ""
}

// ForkedReplica returns the ID of the replica a refusal with CodeForked
// names as forked (replica.ForkedError.Replica), or "".
func ForkedReplica(err error) string {
	var fe *replica.ForkedError
	if errors.As(err, &fe) {
		return fe.Replica
	}
	return ""
}

// Recorded reports whether a refusal with code is recorded in the access
// log: a bundle refused for who sent it or for what its changes do (wrong
// sender, out of scope, unauthorised, forged or revoked changes, a revoked
// sender). A bundle that could not be read says nothing of its sender's
// intent, and is not.
func Recorded(code string) bool {
	switch code {
	case CodeWrongSender, CodeOutOfScope, CodeUnauthorizedChange, CodeForgedChange, CodeRevokedChange, CodeRevokedCredential:
		return true
	}
	return false
}

// WriteEntries returns the access log entries of what s sent and the
// replica is about to store: one entry per chart and author, and one more
// for each merge operation (merging charts, or undoing a merge), whose
// Detail names it.
func WriteEntries(s Sender, rec replica.Received) []audit.Entry {
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
		entries = append(entries, audit.Entry{Action: audit.Write, Device: s.Replica, Clinic: s.Clinic,
			User: k.user, Role: k.role, Chart: k.chart, Changes: writes[k], Detail: k.op})
	}
	return entries
}

// ReadEntries returns the access log entries of the charts whose changes
// an answer to s carries, by chart ID.
func ReadEntries(s Sender, out replica.Outgoing) []audit.Entry {
	read := make([]string, 0, len(out.Charts))
	for chart := range out.Charts {
		read = append(read, chart)
	}
	slices.Sort(read)
	entries := make([]audit.Entry, 0, len(read))
	for _, chart := range read {
		entries = append(entries, audit.Entry{Action: audit.Read, Device: s.Replica, Clinic: s.Clinic,
			Chart: chart, Changes: out.Charts[chart]})
	}
	return entries
}

// maxRefusedDetail bounds the message in a refused entry's Detail.
const maxRefusedDetail = 1000

// RefusedEntry returns the access log entry of a bundle from s refused
// with code; the chart is not known, so it is "*", and Detail is the code
// and the message (at most 1000 bytes of it, control characters
// replaced by spaces).
func RefusedEntry(s Sender, code, msg string) audit.Entry {
	if len(msg) > maxRefusedDetail {
		msg = msg[:maxRefusedDetail]
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	return audit.Entry{Action: audit.Refused, Device: s.Replica, Clinic: s.Clinic, Chart: "*", Detail: fmt.Sprintf("%s: %s", code, msg)}
}

// MaxRefusalRevocationBytes bounds the signed revocations a refusal with
// CodeRevokedChange carries back to its sender (the records' bytes): room
// for the largest revocation a device can be given
// (replica.MaxRevocationRecordBytes) and the smaller ones of its clinic.
const MaxRefusalRevocationBytes = 2 << 20

// MaxRefusalRevocations bounds how many revocations such a refusal
// carries.
const MaxRefusalRevocations = 256

// RefusalRevocations returns the signed revocations a sender refused with
// err (matching replica.ErrRevokedChange) needs to leave the refused
// changes out of its next bundle: those of the devices whose changes were
// refused, then those of its clinic (replica.Replica.RevocationsFor), at
// most MaxRefusalRevocations of them and MaxRefusalRevocationBytes in all.
// The sender took those changes before it learnt of their devices'
// revocation; with them, it is refused once, not on every sync.
func (g *Gate) RefusalRevocations(s Sender, err error) [][]byte {
	var refused []string
	var rce *replica.RevokedChangeError
	if errors.As(err, &rce) {
		refused = append(refused, rce.Device)
	}
	var out [][]byte
	size := 0
	for _, rec := range g.rep.RevocationsFor(s.Replica, refused...) {
		if len(out) == MaxRefusalRevocations {
			break
		}
		if size+len(rec) > MaxRefusalRevocationBytes {
			continue
		}
		size += len(rec)
		out = append(out, rec)
	}
	return out
}

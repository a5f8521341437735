package httpsync

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
)

// Errors a Client returns, matched with errors.Is. Each HTTP status the
// cloud answers with maps to one of them; the *StatusError carrying it has
// the details.
var (
	// ErrUnauthorized (401): the device presented no credential, or one the
	// cloud does not accept (another CA, expired, damaged). Re-enrol the
	// device.
	ErrUnauthorized = errors.New("device not authorised by the cloud")
	// ErrForbidden (403): the device is known but may not do this: a change
	// to a chart outside its clinic's scope, a bundle sent in another
	// replica's name, a change its author's role may not make, or one not
	// signed by the device it names.
	ErrForbidden = errors.New("forbidden by the cloud")
	// ErrTooLarge (413): the request is over the cloud's size limit. Lower
	// the local replica's Config.BundleBytes.
	ErrTooLarge = errors.New("request too large for the cloud")
	// ErrMalformed (400): the cloud could not read the bundle (corrupt, an
	// unknown format version, or addressed to another replica).
	ErrMalformed = errors.New("cloud refused a malformed bundle")
	// ErrBusy (503, 429): the cloud is at its limit of concurrent syncs,
	// or has another sync of this device in progress; retry after
	// StatusError.RetryAfter. The Client does.
	ErrBusy = errors.New("cloud busy")
	// ErrSyncInProgress (429): the cloud has another sync of this device
	// in progress (one whose link dropped, say, and which the cloud has
	// not yet cut). It also matches ErrBusy, and is retried.
	ErrSyncInProgress = errors.New("another sync of this device in progress at the cloud")
	// ErrTooSlow (408): the cloud cut the request because its body came
	// too slowly (under the cloud's minimum rate, or past its deadline
	// for a sync). It is retried: the link may be faster next time; if it
	// keeps happening, lower the local replica's Config.BundleBytes.
	ErrTooSlow = errors.New("request too slow for the cloud")
	// ErrServer (5xx other than 503): the cloud failed.
	ErrServer = errors.New("cloud failed")
	// ErrServerNotTrusted: the server's certificate is not one the
	// device credential trusts (another CA, or not the pinned
	// certificate). It is never retried: check the cloud URL, or re-enrol.
	ErrServerNotTrusted = errors.New("cloud's certificate not trusted by the device credential")
	// ErrUnreachable: the cloud could not be reached or the link dropped,
	// and retries ran out. The network error is wrapped too.
	ErrUnreachable = errors.New("cloud unreachable")
)

// Error codes: the "error" member of an error response's JSON body. The
// codes of a refused bundle are the gate's (package replica/gate), the
// same whatever courier brought the bundle, and those the access log
// records.
const (
	CodeMalformed          = gate.CodeMalformed
	CodeVersion            = gate.CodeVersion
	CodeWrongRecipient     = gate.CodeWrongRecipient
	CodeNoCredential       = "no-credential"
	CodeBadCredential      = "bad-credential"
	CodeExpiredCredential  = "expired-credential"
	CodeRevokedCredential  = gate.CodeRevokedCredential
	CodeWrongSender        = gate.CodeWrongSender
	CodeOutOfScope         = gate.CodeOutOfScope
	CodeUnauthorizedChange = gate.CodeUnauthorizedChange
	CodeForgedChange       = gate.CodeForgedChange
	CodeRevokedChange      = gate.CodeRevokedChange
	CodeTooLarge           = gate.CodeTooLarge
	CodeForked             = gate.CodeForked
	CodeBusy               = "busy"
	CodeSyncInProgress     = "sync-in-progress"
	CodeTooSlow            = "too-slow"
	CodeMethod             = "method-not-allowed"
	CodeNotFound           = "not-found"
	CodeInternal           = "internal"
	CodeUnavailable        = "shutting-down"
)

// MaxRefusalRevocationBytes bounds the signed revocations a refusal
// with CodeRevokedChange carries (the records' bytes, before base64): room
// for the largest revocation a device can be given
// (replica.MaxRevocationRecordBytes) and the smaller ones of its clinic
// (gate.MaxRefusalRevocationBytes).
const MaxRefusalRevocationBytes = gate.MaxRefusalRevocationBytes

// maxRefusalRevocations bounds how many revocations such a refusal
// carries.
const maxRefusalRevocations = gate.MaxRefusalRevocations

// maxErrorBodyBytes bounds an error answer a Client reads: a message,
// and the revocations of a refusal with CodeRevokedChange in base64.
const maxErrorBodyBytes = 64<<10 + (MaxRefusalRevocationBytes+2)/3*4 + 4*maxRefusalRevocations

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
	// Revocations, with CodeRevokedChange, are the signed revocations
	// the device needs to leave the refused changes out of its next
	// bundle (base64 in JSON).
	Revocations [][]byte `json:"revocations,omitempty"`
	// Forked, with CodeForked, is the replica ID of the forked author
	// (gate.ForkedReplica).
	Forked string `json:"forked,omitempty"`
}

// StatusError is an error response from the cloud. It matches, with
// errors.Is, the sentinel for its status (ErrUnauthorized, ErrForbidden,
// ErrTooLarge, ErrMalformed, ErrTooSlow, ErrBusy, ErrSyncInProgress,
// ErrServer) and, where the code says
// so, the replica error behind it (replica.ErrBundleVersion,
// replica.ErrMalformedBundle, replica.ErrWrongRecipient,
// replica.ErrUnauthorizedChange, replica.ErrForgedChange, for
// CodeRevokedChange replica.ErrRevokedChange as well as
// replica.ErrForgedChange, and for CodeForked (409 Conflict)
// replica.ErrForkedReplica as well as replica.ErrMalformedBundle, as the
// cloud's own error does).
type StatusError struct {
	Status  int    // HTTP status
	Code    string // one of the Code constants, or "" if the body was not JSON
	Message string // the cloud's explanation, for a person
	// RetryAfter is the cloud's Retry-After, if it sent one.
	RetryAfter time.Duration
	// RequestID names the sync in the cloud's logs, if it said: quote it
	// to the cloud's operator.
	RequestID string
	// Revocations, with CodeRevokedChange, are the signed revocations
	// the cloud sent with its refusal: those of the devices whose
	// changes it refused, and of the device's clinic (at most
	// MaxRefusalRevocationBytes). The Client has its replica learn them
	// (replica.Replica.LearnRevocations) before it returns the error.
	Revocations [][]byte
	// Forked, with CodeForked, is the replica ID of the author the cloud
	// found forked: a change of it reuses a sequence number it used for
	// another change. When it is the device's own ID, the device is a
	// copied or restored data folder: the Client marks its replica
	// forked (replica.Replica.MarkForked) before it returns the error.
	Forked string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" {
		return fmt.Sprintf("cloud answered %d %s: %s", e.Status, e.Code, msg)
	}
	return fmt.Sprintf("cloud answered %d: %s", e.Status, msg)
}

// Is maps the status and code to the package's sentinels.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge
	case ErrMalformed:
		return e.Status == http.StatusBadRequest
	case ErrBusy:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests
	case ErrSyncInProgress:
		return e.Status == http.StatusTooManyRequests
	case ErrTooSlow:
		return e.Status == http.StatusRequestTimeout
	case ErrServer:
		return e.Status >= 500 && e.Status != http.StatusServiceUnavailable
	case replica.ErrBundleVersion:
		return e.Code == CodeVersion
	case replica.ErrMalformedBundle:
		return e.Code == CodeMalformed || e.Code == CodeForked
	case replica.ErrForkedReplica:
		return e.Code == CodeForked
	case replica.ErrWrongRecipient:
		return e.Code == CodeWrongRecipient
	case replica.ErrUnauthorizedChange:
		return e.Code == CodeUnauthorizedChange
	case replica.ErrForgedChange:
		return e.Code == CodeForgedChange || e.Code == CodeRevokedChange
	case replica.ErrRevokedChange:
		return e.Code == CodeRevokedChange
	case ErrNoCredential:
		return e.Code == CodeNoCredential
	case ErrCredentialExpired:
		return e.Code == CodeExpiredCredential
	case ErrCredentialRejected:
		return e.Code == CodeBadCredential
	case ErrCredentialRevoked:
		return e.Code == CodeRevokedCredential
	}
	return false
}

// transient reports whether a status is worth retrying: the cloud was busy
// or failed, or cut a request that came too slowly; not a refusal of this
// request.
func (e *StatusError) transient() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

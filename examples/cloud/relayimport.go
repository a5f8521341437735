package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/relay"
)

// Relay bundles at cloud import. A phone's relay folder (a relay node:
// bundles in its "held" subdirectory, or any "*.relay" file dropped in
// the folder) may hold bundles devices sealed for the cloud. Each is
// opened with relay.Unseal (addressed to the cloud, not expired, signed
// by an enrolled device, all before anything is decrypted; then the
// decrypted bundle must name the signed sender and recipient), then
// applied through the gate as a bundle file or an HTTPS sync is (the same
// checks, refusal codes and access log entries), and answered: the
// cloud's reply, sealed to the device, and an acknowledgement of what it
// applied are written to the folder, where the phone's node adopts them
// at its next scan and carries them back. A bundle applied before (the
// relay memory, relaymemory.go) is reported as a replay and applies
// nothing; a refused one stays where it is.

// relayReplyLifetime is how long a relay reply of the cloud may travel,
// as a device's endpoint's bundles (relay.Config.Lifetime's default).
const relayReplyLifetime = 30 * 24 * time.Hour

// codeExpiredBundle is the refusal code of a relay bundle whose lifetime
// is over (a courier without lifetimes has no such refusal).
const codeExpiredBundle = "expired-bundle"

// relayHeldDir is where a relay node keeps its bundles, inside its
// directory (package relay).
const relayHeldDir = "held"

// relayFile is a relay bundle found in the import folder, or a file
// refused unread (err).
type relayFile struct {
	path string
	raw  []byte
	h    relay.Header
	err  error
}

// relayFiles reads the relay bundles in dir and in its held
// subdirectory: those of changes addressed to cloud, oldest first for
// each sender; the cloud's own bundles of changes lying at the top of dir
// (its earlier replies); and the files refused unread (not regular, too
// large, damaged). Other files, and bundles between other replicas, are
// left out.
func relayFiles(dir, cloud string) (toCloud, replies, refused []relayFile, err error) {
	for _, d := range []string{dir, filepath.Join(dir, relayHeldDir)} {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) && d != dir {
			continue
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("import relay bundles: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".relay") || strings.HasPrefix(name, ".") {
				continue
			}
			path := filepath.Join(d, name)
			raw, err := readRegular(path, relay.MaxBundleBytes+64)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			var env *relay.Envelope
			if err == nil {
				env, err = relay.Parse(raw)
			}
			if err != nil {
				refused = append(refused, relayFile{path: path, err: err})
				continue
			}
			f := relayFile{path: path, raw: raw, h: env.Header}
			switch {
			case f.h.Kind == relay.KindChanges && f.h.Recipient == cloud:
				toCloud = append(toCloud, f)
			case f.h.Kind == relay.KindChanges && f.h.Sender == cloud && d == dir:
				replies = append(replies, f)
			}
		}
	}
	slices.SortFunc(toCloud, func(x, y relayFile) int {
		return cmp.Or(cmp.Compare(x.h.Sender, y.h.Sender), x.h.Created.Compare(y.h.Created), cmp.Compare(x.h.ID, y.h.ID), cmp.Compare(x.path, y.path))
	})
	return toCloud, replies, refused, nil
}

// relayImport imports the relay bundles of one folder.
type relayImport struct {
	g      *gate.Gate
	roster *device.Roster
	id     *device.Identity // the cloud's
	mem    relayMemory
	dir    string
	now    func() time.Time
	stdout io.Writer

	// What was taken, by sender: the bundles applied or replayed (to
	// acknowledge) and whether any was applied (to answer).
	taken   map[string][]relay.Header
	applied map[string]bool
}

// relayResult counts what a relay import did.
type relayResult struct {
	Imported, Replayed, Refused int
}

// Total is the number of relay bundles for the cloud found.
func (r relayResult) Total() int { return r.Imported + r.Replayed + r.Refused }

// importRelayBundles imports the relay bundles addressed to the cloud in
// dir (see the top of this file) through g, and writes the replies and
// acknowledgements. An error is the cloud's own failure, which stops the
// import; refusals and replays are counted and reported on stdout.
func importRelayBundles(ctx context.Context, g *gate.Gate, st state, roster *device.Roster, dir string, stdout io.Writer) (relayResult, error) {
	var res relayResult
	cloud := g.Replica().ID()
	files, replies, refused, err := relayFiles(dir, cloud)
	if err != nil {
		return res, err
	}
	for _, f := range refused {
		res.Refused++
		fmt.Fprintf(stdout, "Refused %s: %s: %v\n", filepath.Base(f.path), relayCode(f.err), f.err)
	}
	if len(files) == 0 {
		return res, nil
	}
	id, err := relayIdentity(ctx, st, cloud)
	if err != nil {
		return res, err
	}
	mem, err := openRelayMemory(ctx, st, time.Now())
	if err != nil {
		return res, err
	}
	ri := &relayImport{g: g, roster: roster, id: id, mem: mem, dir: dir, now: time.Now, stdout: stdout,
		taken: map[string][]relay.Header{}, applied: map[string]bool{}}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		outcome, err := ri.importOne(ctx, f)
		if err != nil {
			return res, err
		}
		switch outcome {
		case relayImported:
			res.Imported++
		case relayReplayed:
			res.Replayed++
		default:
			res.Refused++
		}
	}
	for _, sender := range slices.Sorted(maps.Keys(ri.taken)) {
		if err := ri.answer(ctx, sender, replies); err != nil {
			return res, err
		}
	}
	return res, nil
}

type relayOutcome int

const (
	relayRefused relayOutcome = iota
	relayImported
	relayReplayed
)

// importOne opens, applies and remembers one relay bundle.
func (ri *relayImport) importOne(ctx context.Context, f relayFile) (relayOutcome, error) {
	name := filepath.Base(f.path)
	u, err := relay.Unseal(f.raw, ri.id, ri.roster, ri.now())
	if err != nil {
		if !isRelayRefusal(err) {
			return relayRefused, fmt.Errorf("import %s: %w", name, err)
		}
		code := relayCode(err)
		fmt.Fprintf(ri.stdout, "Refused %s (relay bundle %s from %s): %s: %v\n", name, f.h.ID, f.h.Sender, code, err)
		ri.recordRefusal(ctx, f.raw, code, err)
		return relayRefused, nil
	}
	s := gate.Sender{Replica: u.From.ReplicaID, Clinic: u.From.Clinic}
	leave, err := ri.g.Enter(ctx, s.Replica)
	if err != nil {
		return relayRefused, fmt.Errorf("import %s: %w", name, err)
	}
	defer leave()
	seen, err := ri.mem.Applied(ctx, u.Key())
	if err != nil {
		return relayRefused, fmt.Errorf("import %s: %w", name, err)
	}
	if seen {
		err := fmt.Errorf("relay bundle %s from %s: %w", u.ID, u.Sender, relay.ErrReplayed)
		fmt.Fprintf(ri.stdout, "Replayed %s: %v; nothing applied.\n", name, err)
		ri.taken[s.Replica] = append(ri.taken[s.Replica], u.Header)
		return relayReplayed, nil
	}
	rec, err := ri.g.Receive(ctx, s, u.Bundle)
	if code := gate.CodeOf(err); code != "" {
		fmt.Fprintf(ri.stdout, "Refused %s (relay bundle %s from %s, clinic %s): %s: %v\n", name, u.ID, s.Replica, s.Clinic, code, err)
		return relayRefused, nil
	}
	if err != nil {
		return relayRefused, fmt.Errorf("import %s: %w", name, err)
	}
	if err := ri.mem.Remember(ctx, u.Key(), u.Expires); err != nil {
		return relayImported, fmt.Errorf("import %s: applied, but not remembered as applied: %w", name, err)
	}
	fmt.Fprintf(ri.stdout, "Imported %s (relay bundle %s) from %s (clinic %s): %d new changes, %d already here.\n", name, u.ID, s.Replica, s.Clinic, rec.Applied, rec.Duplicates)
	ri.taken[s.Replica] = append(ri.taken[s.Replica], u.Header)
	ri.applied[s.Replica] = true
	return relayImported, nil
}

// recordRefusal records a refusal the relay made of a bundle that its
// sender signed, as the gate records its own and HTTPS a revoked device's
// handshake (gate.Gate.Refused): a revoked device's bundle, signed with
// the key it was enrolled with (the relay refuses it before it looks at
// the signature, so the cloud looks), and an enrolled device's bundle
// carrying another's (found once the signature verified), which the gate
// refuses as a bundle of another sender. A refusal that names a device
// without its signature names no one, and is not recorded.
func (ri *relayImport) recordRefusal(ctx context.Context, raw []byte, code string, err error) {
	if !errors.Is(err, device.ErrRevoked) && !errors.Is(err, relay.ErrHeaderMismatch) {
		return
	}
	env, perr := relay.Parse(raw)
	if perr != nil {
		return
	}
	pub, verr := env.VerifyEnrolled(ri.roster)
	if verr != nil {
		return
	}
	ri.g.Refused(ctx, gate.Sender{Replica: pub.ReplicaID, Clinic: pub.Clinic}, code, err)
}

// answer writes to the folder the acknowledgement of the bundles of
// sender taken, and, if any was applied, the cloud's reply: the sender's
// bundle (gate.Answer: its clinic's charts it lacks, recorded as reads,
// and the cloud's acknowledgement of what it holds), sealed to it. The
// cloud's earlier replies to it at the top of the folder are removed:
// the new one carries what they did.
func (ri *relayImport) answer(ctx context.Context, sender string, replies []relayFile) error {
	now := ri.now()
	taken := slices.CompactFunc(slices.SortedFunc(slices.Values(ri.taken[sender]), func(x, y relay.Header) int {
		return cmp.Compare(x.Key(), y.Key())
	}), func(x, y relay.Header) bool { return x.Key() == y.Key() }) // a replayed copy of a bundle taken once
	acks, err := relay.Acknowledge(ri.id, sender, taken, now)
	if err != nil {
		return fmt.Errorf("acknowledge to %s: %w", sender, err)
	}
	for _, raw := range acks {
		if _, err := ri.write(raw); err != nil {
			return fmt.Errorf("acknowledge to %s: %w", sender, err)
		}
	}
	if !ri.applied[sender] {
		return nil
	}
	pub, err := ri.roster.Lookup(sender)
	if err != nil {
		return fmt.Errorf("reply to %s: %w", sender, err)
	}
	s := gate.Sender{Replica: sender, Clinic: pub.Clinic}
	out, err := ri.g.Answer(ctx, s, gate.AnswerOptions{})
	if err != nil {
		return fmt.Errorf("reply to %s: %w", sender, err)
	}
	raw, err := relay.Seal(ri.id, ri.roster, sender, out.Data, now, relayReplyLifetime)
	if err != nil {
		return fmt.Errorf("reply to %s: %w", sender, err)
	}
	name, err := ri.write(raw)
	if err != nil {
		return fmt.Errorf("reply to %s: %w", sender, err)
	}
	for _, old := range replies {
		if old.h.Recipient != sender {
			continue
		}
		if err := os.Remove(old.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove superseded reply: %w", err)
		}
	}
	fmt.Fprintf(ri.stdout, "Wrote relay reply %s for %s: %d changes.\n", name, sender, out.Changes)
	return nil
}

// write writes a relay bundle of the cloud's to the folder, atomically and
// durably, named by its key as a relay node names what it holds.
func (ri *relayImport) write(raw []byte) (string, error) {
	env, err := relay.Parse(raw)
	if err != nil {
		return "", err
	}
	name := env.Key() + ".relay"
	if err := atomicfile.Write(filepath.Join(ri.dir, name), raw, atomicfile.Options{TempPattern: ".cs-*.tmp"}); err != nil {
		return "", err
	}
	return name, nil
}

// isRelayRefusal reports whether err refuses a relay bundle for what it
// is (relay.BadInput), rather than failing for the cloud's own reasons.
func isRelayRefusal(err error) bool {
	for _, target := range relay.BadInput {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// relayCode returns the refusal code of a relay bundle refused before
// the gate saw it: a refusal of its sender as HTTPS refuses a device's
// credential (unknown or forged: bad-credential; expired; revoked), of a
// bundle naming another sender than signed it as the gate's wrong-sender,
// of one that cannot be read as malformed.
func relayCode(err error) string {
	switch {
	case errors.Is(err, device.ErrRevoked):
		return gate.CodeRevokedCredential
	case errors.Is(err, device.ErrExpired):
		return httpsync.CodeExpiredCredential
	case errors.Is(err, device.ErrUnknownDevice), errors.Is(err, device.ErrBadSignature):
		return httpsync.CodeBadCredential
	case errors.Is(err, relay.ErrExpired):
		return codeExpiredBundle
	case errors.Is(err, relay.ErrHeaderMismatch):
		return gate.CodeWrongSender
	case errors.Is(err, relay.ErrWrongRecipient):
		return gate.CodeWrongRecipient
	case errors.Is(err, relay.ErrUndecryptable):
		return gate.CodeMalformed
	}
	if code := gate.CodeOf(err); code != "" {
		return code
	}
	return gate.CodeMalformed
}

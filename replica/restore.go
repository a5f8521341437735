package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// ErrReusedID is returned by RestoreAs when the restored replica would
// keep the ID of the replica the backup was made of.
var ErrReusedID = errors.New("replica: a restored replica must not reuse its backup's replica ID")

// Backup writes a consistent copy of the replica database at path (made
// by Open) to out, which must not exist, while the replica may be open
// and in use, here or in another process: the copy holds every write
// acknowledged before it began and none after. It is a plain SQLite file,
// mode 0600 and fsynced; the caller encrypts it if it leaves the device
// (it holds every chart in clear). The copy is checked (SQLite's quick
// check) before Backup returns; a damaged database, or a copy found
// damaged, gives a *DamagedError and no file.
//
// A backup is restored with RestoreAs, never by copying it back in
// place: see RestoreAs.
func Backup(ctx context.Context, path, out string) error {
	return BackupConfig(ctx, path, out, Config{})
}

// BackupConfig is Backup of a database encrypted with cfg.DatabaseKey:
// the copy is encrypted with the same key.
func BackupConfig(ctx context.Context, path, out string, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := sqlite.BackupConfig(ctx, path, out, cfg.storeConfig()); err != nil {
		if sqlite.IsDamage(err) {
			return &DamagedError{Path: path, Problems: []string{err.Error()}}
		}
		return fmt.Errorf("back up replica: %w", err)
	}
	problems, err := sqlite.CheckFileConfig(ctx, out, false, MaxProblems, cfg.storeConfig())
	if err == nil && len(problems) > 0 {
		err = &DamagedError{Path: out, Problems: problems}
	}
	if err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("back up replica: check the copy: %w", err)
	}
	return nil
}

// RestoreAs makes a new replica at newPath, which must not exist, from the
// backup at backupPath (a file Backup wrote, decrypted; or BackupConfig,
// with the same cfg.DatabaseKey, which the new replica is encrypted with
// too), and opens it with cfg. The backup file is read, not changed.
//
// The new replica holds every chart and change of the backup, but under a
// fresh replica ID: cfg.Signer's (a new device identity, which must not
// be the old one), or a random one. A replica's ID is the Automerge actor
// of its changes, and the replica the backup was made of may have gone on
// editing after it (its later changes numbered from where the backup
// stops): a restored copy editing as that actor would reuse its sequence
// numbers, and every peer would refuse its changes. Under a new ID the old
// replica's changes stay authored by the old ID, and new edits use the
// new one. What the backup knew of its peers' positions is forgotten: the
// new ID is a new peer to every one of them, so the first sync with a
// peer sends the new replica everything it lacks, the old replica's
// changes made after the backup included, and sends the peer the
// backup's changes it may lack (those it holds are skipped on arrival).
//
// The backup is checked in full first (a damaged one gives a
// *DamagedError); a file that holds no replica is refused. On error
// nothing is left at newPath.
func RestoreAs(ctx context.Context, backupPath, newPath string, cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(newPath); err == nil {
		return nil, fmt.Errorf("restore to %s: %w", newPath, os.ErrExist)
	}
	problems, err := sqlite.CheckFileConfig(ctx, backupPath, true, MaxProblems, cfg.storeConfig())
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", backupPath, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("restore: %w", &DamagedError{Path: backupPath, Problems: problems, Full: true})
	}
	dir := filepath.Dir(newPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore to %s: %w", newPath, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(newPath)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", newPath, err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	os.Remove(tmpPath) // copyFile makes it anew
	oldID, newID, err := renew(ctx, backupPath, tmpPath, cfg)
	if err == nil {
		if err = os.Rename(tmpPath, newPath); err == nil {
			err = atomicfile.SyncDir(dir)
		}
	}
	if err != nil {
		for _, p := range []string{tmpPath, tmpPath + "-wal", tmpPath + "-shm"} {
			_ = os.Remove(p)
		}
		return nil, fmt.Errorf("restore %s to %s: %w", backupPath, newPath, err)
	}
	r, err := Open(ctx, newPath, cfg)
	if err != nil {
		return nil, fmt.Errorf("open restored replica: %w", err)
	}
	r.log.Info("replica restored from a backup under a new ID", "backup", backupPath, "backup_replica", oldID, "replica", newID)
	return r, nil
}

// renew copies the backup to path and gives the copy its new ID, with no
// peer positions.
func renew(ctx context.Context, backupPath, path string, cfg Config) (oldID, newID string, err error) {
	if err := copyFile(backupPath, path); err != nil {
		return "", "", err
	}
	st, err := sqlite.OpenConfig(ctx, path, cfg.storeConfig())
	if err != nil {
		return "", "", err
	}
	defer func() {
		if cerr := st.Close(); err == nil && cerr != nil {
			err = cerr
		}
		// Closing the last connection moves the write-ahead log into the
		// file and removes it: the file alone is the replica.
		if _, serr := os.Stat(path + "-wal"); err == nil && serr == nil {
			err = fmt.Errorf("the restored database's write-ahead log was not merged into it")
		}
	}()
	oldID, err = st.Meta(ctx, metaReplicaID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", fmt.Errorf("%s holds no replica (no replica ID): not a backup of one", backupPath)
	}
	if err != nil {
		return "", "", err
	}
	newID = NewID()
	if cfg.Signer != nil {
		newID = cfg.Signer.ReplicaID()
	}
	if _, err := idBytes(newID); err != nil {
		return "", "", fmt.Errorf("new %w", err)
	}
	if newID == oldID {
		return "", "", fmt.Errorf("the backup is of replica %s: %w (make the restored device a new identity)", oldID, ErrReusedID)
	}
	peers, err := st.Peers(ctx)
	if err != nil {
		return "", "", err
	}
	b := store.Batch{Meta: map[string]string{metaReplicaID: newID}}
	for _, p := range peers {
		b.Peers = append(b.Peers, store.Peer{ID: p.ID})
	}
	if _, err := st.Write(ctx, b); err != nil {
		return "", "", fmt.Errorf("give the restored replica its ID: %w", err)
	}
	return oldID, newID, nil
}

// copyFile copies src to dst, a new file of mode 0600, and fsyncs it.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Sync()
}

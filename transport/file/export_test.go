package file

import "os"

// SetSyncFile replaces how Export fsyncs its temporary file, for tests.
func SetSyncFile(f func(*os.File) error) (restore func()) {
	old := syncFile
	syncFile = f
	return func() { syncFile = old }
}

// SetRename replaces how Export renames its temporary file, for tests.
func SetRename(f func(from, to string) error) (restore func()) {
	old := rename
	rename = f
	return func() { rename = old }
}

// SetSyncDir replaces how Export fsyncs the directory, for tests.
func SetSyncDir(f func(dir string) error) (restore func()) {
	old := syncDir
	syncDir = f
	return func() { syncDir = old }
}

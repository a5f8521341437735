// The parts of SQLite's VFS interface (https://sqlite.org/c3ref/vfs.html,
// https://sqlite.org/c3ref/io_methods.html) this wrapper uses, declared as
// that stable interface defines them. The functions are those of the
// SQLite that github.com/mutecomm/go-sqlcipher/v4 links into the program.

#ifndef CHARTSYNC_FAULTVFS_H
#define CHARTSYNC_FAULTVFS_H

typedef long long sqlite3_int64;
typedef struct sqlite3_file sqlite3_file;
typedef struct sqlite3_io_methods sqlite3_io_methods;
typedef struct sqlite3_vfs sqlite3_vfs;
typedef void (*sqlite3_syscall_ptr)(void);

struct sqlite3_file {
	const sqlite3_io_methods *pMethods;
};

struct sqlite3_io_methods {
	int iVersion;
	int (*xClose)(sqlite3_file *);
	int (*xRead)(sqlite3_file *, void *, int, sqlite3_int64);
	int (*xWrite)(sqlite3_file *, const void *, int, sqlite3_int64);
	int (*xTruncate)(sqlite3_file *, sqlite3_int64);
	int (*xSync)(sqlite3_file *, int);
	int (*xFileSize)(sqlite3_file *, sqlite3_int64 *);
	int (*xLock)(sqlite3_file *, int);
	int (*xUnlock)(sqlite3_file *, int);
	int (*xCheckReservedLock)(sqlite3_file *, int *);
	int (*xFileControl)(sqlite3_file *, int, void *);
	int (*xSectorSize)(sqlite3_file *);
	int (*xDeviceCharacteristics)(sqlite3_file *);
	int (*xShmMap)(sqlite3_file *, int, int, int, void volatile **);
	int (*xShmLock)(sqlite3_file *, int, int, int);
	void (*xShmBarrier)(sqlite3_file *);
	int (*xShmUnmap)(sqlite3_file *, int);
	int (*xFetch)(sqlite3_file *, sqlite3_int64, int, void **);
	int (*xUnfetch)(sqlite3_file *, sqlite3_int64, void *);
};

struct sqlite3_vfs {
	int iVersion;
	int szOsFile;
	int mxPathname;
	sqlite3_vfs *pNext;
	const char *zName;
	void *pAppData;
	int (*xOpen)(sqlite3_vfs *, const char *, sqlite3_file *, int, int *);
	int (*xDelete)(sqlite3_vfs *, const char *, int);
	int (*xAccess)(sqlite3_vfs *, const char *, int, int *);
	int (*xFullPathname)(sqlite3_vfs *, const char *, int, char *);
	void *(*xDlOpen)(sqlite3_vfs *, const char *);
	void (*xDlError)(sqlite3_vfs *, int, char *);
	void (*(*xDlSym)(sqlite3_vfs *, void *, const char *))(void);
	void (*xDlClose)(sqlite3_vfs *, void *);
	int (*xRandomness)(sqlite3_vfs *, int, char *);
	int (*xSleep)(sqlite3_vfs *, int);
	int (*xCurrentTime)(sqlite3_vfs *, double *);
	int (*xGetLastError)(sqlite3_vfs *, int, char *);
	int (*xCurrentTimeInt64)(sqlite3_vfs *, sqlite3_int64 *);
	int (*xSetSystemCall)(sqlite3_vfs *, const char *, sqlite3_syscall_ptr);
	sqlite3_syscall_ptr (*xGetSystemCall)(sqlite3_vfs *, const char *);
	const char *(*xNextSystemCall)(sqlite3_vfs *, const char *);
};

extern sqlite3_vfs *sqlite3_vfs_find(const char *);
extern int sqlite3_vfs_register(sqlite3_vfs *, int);

#define SQLITE_OK 0
#define SQLITE_ERROR 1
#define SQLITE_CANTOPEN 14
#define SQLITE_OPEN_MAIN_DB 0x00000100
#define SQLITE_OPEN_WAL 0x00080000

#define FAULT_VFS_NAME "chartsync-fault"

// Operations a rule fails.
enum {
	FAULT_OP_WRITE = 1,    // any write
	FAULT_OP_SYNC = 2,     // an fsync
	FAULT_OP_SHM = 3,      // growing the shared-memory wal-index
	FAULT_OP_GROW = 4,     // anything that makes a file bigger (write past the end, truncate up, shm growth)
	FAULT_OP_DELETE = 5,   // deleting a file
};

// Files a rule applies to (a bit set).
enum {
	FAULT_DB = 1,
	FAULT_WAL = 2,
	FAULT_SHMFILE = 4,
	FAULT_OTHER = 8,
};

typedef struct fault_rule {
	int op;
	int files;
	int skip;      // matching operations to let through first
	int times;     // matching operations to fail then; negative: all
	int code;      // SQLite result code to return
	int sys_errno; // errno to leave for xGetLastError (0: leave it)
	int perform;   // writes: carry the write out, then report the failure
	int after;     // 1 + the index of a rule that must have fired first (0: none)
	int nfired;    // operations this rule has failed
} fault_rule;

int fault_register(int make_default);
void fault_arm(const char *dir, const fault_rule *rules, int n);
void fault_disarm(void);
void fault_skip_syncs(const char *dir);
long long fault_fired(void);

#endif

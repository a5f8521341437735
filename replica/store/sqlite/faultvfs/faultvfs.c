// A VFS that passes every call to SQLite's default VFS and fails chosen
// writes, syncs and shared-memory growths of the files under one
// directory. See faultvfs.go.

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "faultvfs.h"

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

#define MAX_RULES 16
static fault_rule rules[MAX_RULES];
static int nrules;
static char prefix[4096];
static char nosync_prefix[4096];
static long long fired;

typedef struct fault_file {
	sqlite3_file base;
	sqlite3_file *real;
	int kind;
	char *path; // NULL for a temporary file
} fault_file;

static int kind_of(int flags) {
	if (flags & SQLITE_OPEN_MAIN_DB) return FAULT_DB;
	if (flags & SQLITE_OPEN_WAL) return FAULT_WAL;
	return FAULT_OTHER;
}

// watched reports whether faults may apply to f: it is under the armed
// directory. mu is held.
static int watched(fault_file *f) {
	return f->path != 0 && prefix[0] != 0 && strncmp(f->path, prefix, strlen(prefix)) == 0;
}

// decide reports whether a rule fails this operation on a file of kind,
// and copies the rule to out. grows says whether the operation would make
// the file bigger.
static int decide(fault_file *f, int op, int kind, int grows, fault_rule *out) {
	int hit = 0;
	pthread_mutex_lock(&mu);
	if (!watched(f)) {
		pthread_mutex_unlock(&mu);
		return 0;
	}
	for (int i = 0; i < nrules; i++) {
		fault_rule *r = &rules[i];
		if (!(r->files & kind)) continue;
		if (r->after > 0 && (r->after > nrules || rules[r->after - 1].nfired == 0)) continue;
		if (r->op == FAULT_OP_GROW) {
			if (!grows) continue;
		} else if (r->op != op) {
			continue;
		}
		if (r->skip > 0) {
			r->skip--;
			continue;
		}
		if (r->times == 0) continue;
		if (r->times > 0) r->times--;
		r->nfired++;
		*out = *r;
		fired++;
		hit = 1;
		break;
	}
	pthread_mutex_unlock(&mu);
	return hit;
}

static int fail(const fault_rule *r) {
	if (r->sys_errno) errno = r->sys_errno;
	return r->code;
}

static int f_close(sqlite3_file *p) {
	fault_file *f = (fault_file *)p;
	int rc = f->real->pMethods->xClose(f->real);
	free(f->path);
	f->path = 0;
	return rc;
}

static int f_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int f_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off) {
	fault_file *f = (fault_file *)p;
	sqlite3_int64 size = 0;
	int grows = 0;
	fault_rule r;
	if (f->real->pMethods->xFileSize(f->real, &size) == SQLITE_OK) {
		grows = off + n > size;
	}
	if (!decide(f, FAULT_OP_WRITE, f->kind, grows, &r)) {
		return f->real->pMethods->xWrite(f->real, buf, n, off);
	}
	if (r.perform) {
		f->real->pMethods->xWrite(f->real, buf, n, off);
	} else if (r.op == FAULT_OP_GROW && off < size) {
		// A full disk takes what fits in the space the file already has.
		f->real->pMethods->xWrite(f->real, buf, (int)(size - off), off);
	}
	return fail(&r);
}

static int f_truncate(sqlite3_file *p, sqlite3_int64 n) {
	fault_file *f = (fault_file *)p;
	sqlite3_int64 size = 0;
	int grows = 0;
	fault_rule r;
	if (f->real->pMethods->xFileSize(f->real, &size) == SQLITE_OK) {
		grows = n > size;
	}
	if (grows && decide(f, FAULT_OP_GROW, f->kind, 1, &r)) {
		return fail(&r);
	}
	return f->real->pMethods->xTruncate(f->real, n);
}

static int f_sync(sqlite3_file *p, int flags) {
	fault_file *f = (fault_file *)p;
	fault_rule r;
	int skip;
	if (decide(f, FAULT_OP_SYNC, f->kind, 0, &r)) {
		// The data stays where the kernel had it, as after a real
		// failed fsync: readable now, durable or not.
		return fail(&r);
	}
	pthread_mutex_lock(&mu);
	skip = f->path != 0 && nosync_prefix[0] != 0 && strncmp(f->path, nosync_prefix, strlen(nosync_prefix)) == 0;
	pthread_mutex_unlock(&mu);
	if (skip) return SQLITE_OK;
	return f->real->pMethods->xSync(f->real, flags);
}

static int f_file_size(sqlite3_file *p, sqlite3_int64 *size) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xFileSize(f->real, size);
}

static int f_lock(sqlite3_file *p, int lock) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xLock(f->real, lock);
}

static int f_unlock(sqlite3_file *p, int lock) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xUnlock(f->real, lock);
}

static int f_check_reserved_lock(sqlite3_file *p, int *out) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int f_file_control(sqlite3_file *p, int op, void *arg) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int f_sector_size(sqlite3_file *p) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xSectorSize(f->real);
}

static int f_device_characteristics(sqlite3_file *p) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int f_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp) {
	fault_file *f = (fault_file *)p;
	fault_rule r;
	if (extend) {
		// Map without growing first: only a region that is not there
		// yet needs space.
		int rc = f->real->pMethods->xShmMap(f->real, pg, pgsz, 0, pp);
		if (rc != SQLITE_OK || *pp != 0) return rc;
		if (decide(f, FAULT_OP_SHM, FAULT_SHMFILE, 1, &r)) {
			*pp = 0;
			return fail(&r);
		}
	}
	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *p, int off, int n, int flags) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void f_shm_barrier(sqlite3_file *p) {
	fault_file *f = (fault_file *)p;
	f->real->pMethods->xShmBarrier(f->real);
}

static int f_shm_unmap(sqlite3_file *p, int del) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int f_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **pp) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int f_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr) {
	fault_file *f = (fault_file *)p;
	return f->real->pMethods->xUnfetch(f->real, off, ptr);
}

static const sqlite3_io_methods fault_io = {
	3,
	f_close,
	f_read,
	f_write,
	f_truncate,
	f_sync,
	f_file_size,
	f_lock,
	f_unlock,
	f_check_reserved_lock,
	f_file_control,
	f_sector_size,
	f_device_characteristics,
	f_shm_map,
	f_shm_lock,
	f_shm_barrier,
	f_shm_unmap,
	f_fetch,
	f_unfetch,
};

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out) {
	fault_file *f = (fault_file *)p;
	int rc;
	(void)vfs;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	f->kind = kind_of(flags);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out);
	if (f->real->pMethods == 0) {
		p->pMethods = 0;
		return rc;
	}
	if (f->real->pMethods->iVersion < 3) {
		// This wrapper forwards version 3 methods only.
		f->real->pMethods->xClose(f->real);
		p->pMethods = 0;
		return SQLITE_CANTOPEN;
	}
	if (name != 0) {
		f->path = strdup(name);
	}
	p->pMethods = &fault_io;
	return rc;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
	fault_file f;
	fault_rule r;
	size_t n = strlen(name);
	(void)vfs;
	memset(&f, 0, sizeof(f));
	f.path = (char *)name;
	f.kind = FAULT_DB;
	if (n > 4 && strcmp(name + n - 4, "-wal") == 0) {
		f.kind = FAULT_WAL;
	} else if (n > 8 && strcmp(name + n - 8, "-journal") == 0) {
		f.kind = FAULT_OTHER;
	}
	if (decide(&f, FAULT_OP_DELETE, f.kind, 0, &r)) {
		return fail(&r);
	}
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *v_dl_open(sqlite3_vfs *vfs, const char *name) {
	(void)vfs;
	return real_vfs->xDlOpen(real_vfs, name);
}

static void v_dl_error(sqlite3_vfs *vfs, int n, char *msg) {
	(void)vfs;
	real_vfs->xDlError(real_vfs, n, msg);
}

static void (*v_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void) {
	(void)vfs;
	return real_vfs->xDlSym(real_vfs, h, sym);
}

static void v_dl_close(sqlite3_vfs *vfs, void *h) {
	(void)vfs;
	real_vfs->xDlClose(real_vfs, h);
}

static int v_randomness(sqlite3_vfs *vfs, int n, char *out) {
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us) {
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int v_current_time(sqlite3_vfs *vfs, double *t) {
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, t);
}

static int v_get_last_error(sqlite3_vfs *vfs, int n, char *msg) {
	(void)vfs;
	return real_vfs->xGetLastError(real_vfs, n, msg);
}

static int v_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t) {
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

int fault_register(int make_default) {
	int rc;
	pthread_mutex_lock(&mu);
	if (real_vfs == 0) {
		sqlite3_vfs *base = sqlite3_vfs_find(0);
		if (base == 0) {
			pthread_mutex_unlock(&mu);
			return SQLITE_ERROR;
		}
		if (base->iVersion < 2) {
			pthread_mutex_unlock(&mu);
			return SQLITE_ERROR;
		}
		real_vfs = base;
		memset(&fault_vfs, 0, sizeof(fault_vfs));
		fault_vfs.iVersion = 2;
		fault_vfs.szOsFile = (int)sizeof(fault_file) + base->szOsFile;
		fault_vfs.mxPathname = base->mxPathname;
		fault_vfs.zName = FAULT_VFS_NAME;
		fault_vfs.xOpen = v_open;
		fault_vfs.xDelete = v_delete;
		fault_vfs.xAccess = v_access;
		fault_vfs.xFullPathname = v_full_pathname;
		fault_vfs.xDlOpen = v_dl_open;
		fault_vfs.xDlError = v_dl_error;
		fault_vfs.xDlSym = v_dl_sym;
		fault_vfs.xDlClose = v_dl_close;
		fault_vfs.xRandomness = v_randomness;
		fault_vfs.xSleep = v_sleep;
		fault_vfs.xCurrentTime = v_current_time;
		fault_vfs.xGetLastError = v_get_last_error;
		fault_vfs.xCurrentTimeInt64 = v_current_time_int64;
	}
	pthread_mutex_unlock(&mu);
	rc = sqlite3_vfs_register(&fault_vfs, make_default);
	return rc;
}

void fault_arm(const char *dir, const fault_rule *rs, int n) {
	pthread_mutex_lock(&mu);
	strncpy(prefix, dir, sizeof(prefix) - 1);
	prefix[sizeof(prefix) - 1] = 0;
	if (n > MAX_RULES) n = MAX_RULES;
	memcpy(rules, rs, sizeof(fault_rule) * (size_t)n);
	nrules = n;
	fired = 0;
	pthread_mutex_unlock(&mu);
}

void fault_skip_syncs(const char *dir) {
	pthread_mutex_lock(&mu);
	strncpy(nosync_prefix, dir, sizeof(nosync_prefix) - 1);
	nosync_prefix[sizeof(nosync_prefix) - 1] = 0;
	pthread_mutex_unlock(&mu);
}

void fault_disarm(void) {
	pthread_mutex_lock(&mu);
	prefix[0] = 0;
	nrules = 0;
	pthread_mutex_unlock(&mu);
}

long long fault_fired(void) {
	long long n;
	pthread_mutex_lock(&mu);
	n = fired;
	pthread_mutex_unlock(&mu);
	return n;
}

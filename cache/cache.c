/*
** cache.c -- the kernel cache in SQLite (see cache.h).
**
** Schema (PRAGMA user_version = DF_CACHE_SCHEMA, PRAGMA application_id =
** DF_CACHE_APP_ID): `entries` holds one row per key with its metadata;
** `blobs` holds the blob of entry `id` under the same id, so that listing,
** statistics and explain never read the blobs; `counters` holds the hit
** and miss totals.  Both tables of an entry are written in one
** transaction, and the checksum in `entries` covers the key, the blob,
** the configuration and the times: a torn or damaged row never verifies.
**
** Every sqlite3 call goes through SQL_CHECK(), which fills the df_err with
** the database path, sqlite3_errmsg() and the file:line of the call, and
** remembers the result code in c->last_rc so that the public functions
** can tell corruption (SQLITE_CORRUPT, SQLITE_NOTADB: move the file
** aside and start again) from other failures (report them).
*/
#include "cache/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DF_CACHE_SCHEMA 1
#define DF_CACHE_APP_ID 0x64664b43 /* "dfKC" */
#define DF_CACHE_BUSY_MS 10000

struct df_cache {
  sqlite3 *db;       /* NULL when disabled */
  char *path;        /* the database file ("" when none could be resolved) */
  int mode;          /* DF_CACHE_MODE_* */
  unsigned flags;
  int last_rc;       /* result code of the last failed SQL_CHECK */
  int have_ino;      /* the file this connection opened, to tell whether */
  dev_t dev;         /* another process has already moved it aside */
  ino_t ino;
  int64_t run_hits, run_misses, run_stores;
  int warnings;
  char warning[DF_ERR_MSG_MAX];
};

/* ---------------------------------------------------------------- keys */

static const char *const key_names[DF_CACHE_NKEY] = {
#define X(name, desc) #name,
    DF_CACHE_KEY_FIELDS(X)
#undef X
};
static const char *const key_descs[DF_CACHE_NKEY] = {
#define X(name, desc) desc,
    DF_CACHE_KEY_FIELDS(X)
#undef X
};
static const size_t key_offsets[DF_CACHE_NKEY] = {
#define X(name, desc) offsetof(df_cache_key, name),
    DF_CACHE_KEY_FIELDS(X)
#undef X
};

const char *df_cache_key_field(const df_cache_key *k, int i) {
  return *(const char *const *)((const char *)k + key_offsets[i]);
}

void df_cache_key_set(df_cache_key *k, int i, const char *value) {
  *(const char **)((char *)k + key_offsets[i]) = value;
}

const char *df_cache_key_name(int i) {
  return i >= 0 && i < DF_CACHE_NKEY ? key_names[i] : NULL;
}

const char *df_cache_key_desc(int i) {
  return i >= 0 && i < DF_CACHE_NKEY ? key_descs[i] : NULL;
}

int df_cache_key_index(const char *name) {
  for (int i = 0; name && i < DF_CACHE_NKEY; i++)
    if (strcmp(name, key_names[i]) == 0) return i;
  return -1;
}

/* A key field for get/put: NULL is "". */
static const char *field_or_empty(const df_cache_key *k, int i) {
  const char *v = df_cache_key_field(k, i);
  return v ? v : "";
}

/* ir_hash is 16 or 32 lowercase hex digits, so one kernel has one
** spelling. */
static int check_ir_hash(const char *h, df_err *err) {
  size_t n = strlen(h);
  int ok = n == 16 || n == 32;
  for (size_t i = 0; ok && i < n; i++)
    ok = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f');
  if (ok) return 0;
  char q[80];
  return df_err_set(err, DF_EINVAL,
                    "kernel cache key: ir_hash '%s' is not 16 or 32 lowercase hex digits",
                    df_err_quote(q, sizeof q, h, n));
}

/* A complete key for get/put: ir_hash and backend given. */
static int check_key(const df_cache_key *k, df_err *err) {
  if (!k) return df_err_set(err, DF_EINVAL, "kernel cache: no key");
  if (!k->ir_hash || !*k->ir_hash)
    return df_err_set(err, DF_EINVAL, "kernel cache key: ir_hash is missing");
  if (!k->backend || !*k->backend)
    return df_err_set(err, DF_EINVAL, "kernel cache key: backend is missing");
  return check_ir_hash(k->ir_hash, err);
}

/* ---------------------------------------------------------------- checksum */

uint64_t df_cache_fnv1a64(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* FNV-1a of one length-prefixed part, so that parts cannot run into each
** other ("ab" + "c" differs from "a" + "bc"). */
static uint64_t mix_part(uint64_t h, const void *data, size_t n) {
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
  h = df_cache_fnv1a64(h, len, sizeof len);
  return df_cache_fnv1a64(h, data, n);
}

static uint64_t row_checksum(const char *const key[DF_CACHE_NKEY], const void *blob, size_t size,
                             const char *config, const char *times) {
  uint64_t h = DF_CACHE_FNV_OFFSET;
  for (int i = 0; i < DF_CACHE_NKEY; i++) h = mix_part(h, key[i], strlen(key[i]));
  h = mix_part(h, blob, size);
  h = mix_part(h, config, strlen(config));
  return mix_part(h, times, strlen(times));
}

/* ---------------------------------------------------------------- errors */

static long fault_countdown = 0;

void df_cache_inject_fault(long nth) { fault_countdown = nth > 0 ? nth : 0; }

static int df_code(int rc) {
  switch (rc & 0xff) {
  case SQLITE_NOMEM: return DF_ENOMEM;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return DF_EFORMAT;
  default: return DF_EIO;
  }
}

/*
** Check an sqlite3 result.  SQLITE_OK, SQLITE_ROW and SQLITE_DONE pass
** (return 0); anything else records "PATH: kernel cache: MESSAGE
** (FILE:LINE)" in err, remembers the code in c->last_rc and returns a
** negative DF_E* code.
*/
#define SQL_CHECK(c, rc, err) sql_check((c), (rc), __FILE__, __LINE__, (err))

static int sql_check(df_cache *c, int rc, const char *file, int line, df_err *err) {
  const char *msg = NULL;
  if (fault_countdown > 0 && --fault_countdown == 0) {
    rc = SQLITE_IOERR;
    msg = "injected fault";
  }
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return 0;
  c->last_rc = rc;
  if (!msg)
    msg = c->db && sqlite3_errcode(c->db) == rc ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
  return df_err_set(err, df_code(rc), "%s: kernel cache: %s (%s:%d)", c->path, msg, file, line);
}

static int is_corrupt(int rc) {
  return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

/* One warning line on stderr (unless quiet); counted either way. */
static void warn(df_cache *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(df_cache *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->warning, sizeof c->warning, fmt, ap);
  va_end(ap);
  for (char *p = c->warning; *p; p++) /* one line, whatever the path holds */
    if ((unsigned char)*p < 0x20) *p = '?';
  c->warnings++;
  if (!(c->flags & DF_CACHE_QUIET)) {
    fprintf(stderr, "dferc: warning: %s\n", c->warning);
    fflush(stderr);
  }
}

/* ---------------------------------------------------------------- statements */

/* Prepare one statement; *st is NULL on failure. */
static int prep(df_cache *c, sqlite3_stmt **st, const char *sql, df_err *err) {
  *st = NULL;
  int r = SQL_CHECK(c, sqlite3_prepare_v2(c->db, sql, -1, st, NULL), err);
  if (r) {
    sqlite3_finalize(*st);
    *st = NULL;
  }
  return r;
}

/* Run SQL without results (one or more statements). */
static int exec(df_cache *c, const char *sql, df_err *err) {
  return SQL_CHECK(c, sqlite3_exec(c->db, sql, NULL, NULL, NULL), err);
}

/* Run a query that gives one integer (a PRAGMA or a count). */
static int query_int(df_cache *c, const char *sql, int64_t *out, df_err *err) {
  sqlite3_stmt *st;
  *out = 0;
  int r = prep(c, &st, sql, err);
  if (r) return r;
  int rc = sqlite3_step(st);
  r = SQL_CHECK(c, rc, err);
  if (!r && rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return r;
}

/* Bind the key's fields to parameters first..first+NKEY-1. */
static int bind_key(df_cache *c, sqlite3_stmt *st, int first, const char *const key[DF_CACHE_NKEY],
                    df_err *err) {
  for (int i = 0; i < DF_CACHE_NKEY; i++)
    if (SQL_CHECK(c, sqlite3_bind_text(st, first + i, key[i], -1, SQLITE_STATIC), err))
      return DF_EIO;
  return 0;
}

static void key_array(const df_cache_key *k, const char *out[DF_CACHE_NKEY]) {
  for (int i = 0; i < DF_CACHE_NKEY; i++) out[i] = field_or_empty(k, i);
}

/* The key columns by name, in DF_CACHE_KEY_FIELDS order (as in migrations[0]). */
_Static_assert(DF_CACHE_NKEY == 8, "KEY_COLS, KEY_WHERE and the schema name every key field");
#define KEY_COLS "ir_hash, backend, device, arch, toolchain, dferc_version, options, tuning"
#define KEY_WHERE                                                                    \
  "ir_hash = ?1 AND backend = ?2 AND device = ?3 AND arch = ?4 AND toolchain = ?5 " \
  "AND dferc_version = ?6 AND options = ?7 AND tuning = ?8"

/* Roll back an open transaction after a failure; the failure is already
** recorded, so this one's own error is dropped. */
static void rollback(df_cache *c) {
  if (c->db && !sqlite3_get_autocommit(c->db)) {
    df_err ignored = {0};
    long saved = fault_countdown;
    fault_countdown = 0;
    exec(c, "ROLLBACK", &ignored);
    fault_countdown = saved;
  }
}

/* ---------------------------------------------------------------- schema */

/*
** migrations[v] takes a database from schema v to v + 1; migrations[0]
** creates the schema in an empty database.  A later schema appends a step
** (ALTER TABLE ..., or a copy into new tables) and bumps DF_CACHE_SCHEMA.
*/
static const char *const migrations[DF_CACHE_SCHEMA] = {
    /* 0 -> 1 */
    "CREATE TABLE entries (\n"
    "  id            INTEGER PRIMARY KEY,\n"
    "  ir_hash       TEXT NOT NULL,\n"
    "  backend       TEXT NOT NULL,\n"
    "  device        TEXT NOT NULL,\n"
    "  arch          TEXT NOT NULL,\n"
    "  toolchain     TEXT NOT NULL,\n"
    "  dferc_version TEXT NOT NULL,\n"
    "  options       TEXT NOT NULL,\n"
    "  tuning        TEXT NOT NULL,\n"
    "  size          INTEGER NOT NULL,  -- bytes of the blob\n"
    "  checksum      INTEGER NOT NULL,  -- FNV-1a 64 of key, blob, config, times\n"
    "  config        TEXT NOT NULL,\n"
    "  times         TEXT NOT NULL,\n"
    "  created       INTEGER NOT NULL,  -- Unix seconds\n"
    "  used          INTEGER NOT NULL,\n"
    "  hits          INTEGER NOT NULL DEFAULT 0,\n"
    "  UNIQUE (" KEY_COLS ")\n"
    ");\n"
    "CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);\n"
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);\n"
    "INSERT INTO counters VALUES ('hits', 0), ('misses', 0);\n",
};

/* What open found in a file. */
enum { OPEN_OK, OPEN_FAIL, OPEN_CORRUPT, OPEN_NEWER, OPEN_UNKNOWN, OPEN_RETRY };

/* Classify a database by its application id, schema version and objects:
** OPEN_OK (current), OPEN_RETRY (needs creating or migrating), OPEN_NEWER,
** OPEN_UNKNOWN, or < 0 on error. */
static int classify(df_cache *c, int64_t *version, df_err *err) {
  /* one statement, so one snapshot: three separate reads could straddle
  ** another process's commit of a new schema (application id not yet set,
  ** tables already there) and call a fresh cache foreign */
  int64_t app = 0, ver = 0, objects = 0;
  sqlite3_stmt *st;
  if (prep(c, &st,
           "SELECT (SELECT application_id FROM pragma_application_id), "
           "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
           err))
    return DF_EIO;
  int rc = sqlite3_step(st);
  int r = SQL_CHECK(c, rc, err);
  if (!r && rc == SQLITE_ROW) {
    app = sqlite3_column_int64(st, 0);
    ver = sqlite3_column_int64(st, 1);
    objects = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  if (r) return DF_EIO;
  *version = ver;
  if (app == DF_CACHE_APP_ID) {
    if (ver == DF_CACHE_SCHEMA) return OPEN_OK;
    if (ver > DF_CACHE_SCHEMA) return OPEN_NEWER;
    if (ver > 0 || objects == 0) return OPEN_RETRY;
    return OPEN_UNKNOWN;
  }
  if (app == 0 && ver == 0 && objects == 0) return OPEN_RETRY;
  return OPEN_UNKNOWN;
}

/* Create or migrate the schema in one BEGIN IMMEDIATE transaction,
** classifying again inside it: another process may have done it first. */
static int migrate(df_cache *c, df_err *err) {
  if (exec(c, "BEGIN IMMEDIATE", err)) goto fail;
  int64_t ver;
  int k = classify(c, &ver, err);
  if (k < 0) goto fail;
  if (k != OPEN_RETRY) {
    rollback(c);
    return k;
  }
  for (int64_t v = ver; v < DF_CACHE_SCHEMA; v++)
    if (exec(c, migrations[v], err)) goto fail;
  char sql[128];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d; PRAGMA application_id = %d",
           DF_CACHE_SCHEMA, DF_CACHE_APP_ID);
  if (exec(c, sql, err) || exec(c, "COMMIT", err)) goto fail;
  return OPEN_OK;
fail:
  rollback(c);
  return DF_EIO;
}

/*
** Bring a fresh connection into use: check what the file holds, switch a
** file to WAL mode, create or migrate the schema, and probe the entries
** table so that a damaged file shows itself now rather than mid-run.
** Returns OPEN_OK, OPEN_NEWER, OPEN_UNKNOWN (with *ver) or < 0.
*/
static int setup(df_cache *c, int64_t *ver, df_err *err) {
  if (SQL_CHECK(c, sqlite3_busy_timeout(c->db, DF_CACHE_BUSY_MS), err)) return DF_EIO;
  int k = classify(c, ver, err);
  if (k < 0 || k == OPEN_NEWER || k == OPEN_UNKNOWN) return k;
  if (c->mode == DF_CACHE_MODE_FILE) {
    /* journal_mode=WAL needs an exclusive lock that the busy handler does
    ** not always wait for: retry for the busy timeout */
    for (int tries = 0;; tries++) {
      sqlite3_stmt *st;
      if (prep(c, &st, "PRAGMA journal_mode = WAL", err)) return DF_EIO;
      int rc = sqlite3_step(st);
      sqlite3_finalize(st);
      if ((rc & 0xff) == SQLITE_BUSY && tries < DF_CACHE_BUSY_MS / 10) {
        usleep(10000);
        continue;
      }
      if (SQL_CHECK(c, rc, err)) return DF_EIO;
      break;
    }
    /* NORMAL: a commit survives a killed process (not a power cut, which
    ** loses at most the last commits of a cache: never a torn row); and
    ** the -wal file is cut back after checkpoints of big blobs */
    if (exec(c, "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 16777216", err))
      return DF_EIO;
  }
  if (k == OPEN_RETRY) {
    k = migrate(c, err);
    if (k != OPEN_OK) return k;
  }
  int64_t n;
  if (query_int(c, "SELECT count(*) FROM entries", &n, err)) return DF_EIO;
  return OPEN_OK;
}

/* ---------------------------------------------------------------- paths */

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static char *join(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *p = malloc(na + nb + 1);
  if (!p) return NULL;
  memcpy(p, a, na);
  memcpy(p + na, b, nb + 1);
  return p;
}

/* The database path: the argument, $DFERC_CACHE, $XDG_CACHE_HOME/dferc/
** kernels.db (absolute only: the XDG spec says to ignore a relative one),
** $HOME/.cache/dferc/kernels.db, or "" (malloc'ed; NULL when out of
** memory). */
static char *resolve_path(const char *path) {
  if (path && *path) return xstrdup(path);
  const char *env = getenv("DFERC_CACHE");
  if (env && *env) return xstrdup(env);
  env = getenv("XDG_CACHE_HOME");
  if (env && env[0] == '/') return join(env, "/dferc/kernels.db");
  env = getenv("HOME");
  if (env && *env) return join(env, "/.cache/dferc/kernels.db");
  return xstrdup("");
}

/* mkdir -p of the folder that holds `path`; 0 or -1 with errno and the
** folder that failed in `failed`. */
static int make_parent(const char *path, char *failed, size_t failedsz) {
  char *dir = xstrdup(path);
  if (!dir) return -1;
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) {
    free(dir);
    return 0;
  }
  *slash = '\0';
  struct stat st;
  int r = 0;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    for (char *p = dir + 1;; p++) {
      if (*p != '/' && *p != '\0') continue;
      char saved = *p;
      *p = '\0';
      if (mkdir(dir, 0777) != 0 && errno != EEXIST) r = -1;
      else if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        r = -1;
        errno = ENOTDIR;
      }
      if (r) {
        snprintf(failed, failedsz, "%s", dir);
        break;
      }
      *p = saved;
      if (saved == '\0') break;
    }
  }
  int e = errno;
  free(dir);
  errno = e;
  return r;
}

/* ---------------------------------------------------------------- open */

static void close_db(df_cache *c) {
  if (c->db) sqlite3_close_v2(c->db);
  c->db = NULL;
  c->have_ino = 0;
}

static int open_memory(df_cache *c, df_err *err) {
  close_db(c);
  c->mode = DF_CACHE_MODE_MEMORY;
  int rc = sqlite3_open_v2(":memory:", &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (SQL_CHECK(c, rc, err)) {
    close_db(c);
    return DF_ENOMEM;
  }
  int64_t ver;
  if (setup(c, &ver, err) != OPEN_OK) {
    close_db(c);
    return df_err_set(err, DF_ENOMEM, "kernel cache: cannot set up an in-memory database");
  }
  return 0;
}

/*
** One attempt at opening the file: OPEN_OK, OPEN_CORRUPT, OPEN_NEWER,
** OPEN_UNKNOWN (*ver: its schema version), OPEN_RETRY (the file changed
** under us) or OPEN_FAIL (msg says why; use memory).
*/
static int try_open(df_cache *c, int64_t *ver, char *msg, size_t msgsz) {
  char failed[4096];
  c->mode = DF_CACHE_MODE_FILE;
  if (make_parent(c->path, failed, sizeof failed)) {
    snprintf(msg, msgsz, "cannot create the folder %.900s (%s)", failed, strerror(errno));
    return OPEN_FAIL;
  }
  struct stat before, after;
  int existed = stat(c->path, &before) == 0;
  df_err e = {0};
  c->last_rc = 0;
  int rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc == SQLITE_OK) sqlite3_extended_result_codes(c->db, 0);
  if (SQL_CHECK(c, rc, &e)) goto failed;
  if (stat(c->path, &after) == 0) {
    if (existed && (before.st_ino != after.st_ino || before.st_dev != after.st_dev)) {
      close_db(c);
      return OPEN_RETRY;
    }
    if (!S_ISREG(after.st_mode)) {
      snprintf(msg, msgsz, "not a regular file");
      close_db(c);
      return OPEN_FAIL;
    }
    c->have_ino = 1;
    c->dev = after.st_dev;
    c->ino = after.st_ino;
  }
  if (sqlite3_db_readonly(c->db, "main") == 1) {
    snprintf(msg, msgsz, "cannot be opened for writing");
    close_db(c);
    return OPEN_FAIL;
  }
  int k = setup(c, ver, &e);
  if (k >= 0) return k; /* OPEN_OK, OPEN_NEWER or OPEN_UNKNOWN: caller closes */
failed:
  /* a short reason: the warning names the path itself */
  snprintf(msg, msgsz, "%s", c->last_rc ? sqlite3_errstr(c->last_rc) : e.msg);
  if (is_corrupt(c->last_rc)) return OPEN_CORRUPT;
  close_db(c);
  return OPEN_FAIL;
}

/*
** Move a bad database (and its -wal; its -shm is dropped) aside to
** PATH.WHY-TIME and warn once.  Serialised between processes by an flock
** on PATH.lock; when the file at PATH is no longer the one this handle
** opened, another process has already moved it: nothing to do, no
** warning.  Returns 0 (open again) or -1 (could not: use memory).
*/
static int move_aside(df_cache *c, const char *why, const char *detail) {
  int had_ino = c->have_ino;
  dev_t dev = c->dev;
  ino_t ino = c->ino;
  close_db(c);
  char *lock = join(c->path, ".lock");
  int fd = lock ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
  free(lock);
  if (fd >= 0) flock(fd, LOCK_EX);
  int r = 0;
  struct stat st;
  if (stat(c->path, &st) != 0 || (had_ino && (st.st_dev != dev || st.st_ino != ino)))
    goto done;
  char stamp[32], *aside = NULL;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  size_t n = strlen(c->path) + strlen(why) + sizeof stamp + 32;
  aside = malloc(n);
  if (!aside) {
    r = -1;
    goto done;
  }
  for (int i = 0;; i++) {
    if (i == 0) snprintf(aside, n, "%s.%s-%s", c->path, why, stamp);
    else snprintf(aside, n, "%s.%s-%s.%d", c->path, why, stamp, i);
    if (access(aside, F_OK) != 0) break;
  }
  if (rename(c->path, aside) != 0) {
    warn(c, "kernel cache %s %s, and it cannot be moved aside (%s); using an in-memory cache",
         c->path, detail, strerror(errno));
    r = -1;
  } else {
    char *wal = join(c->path, "-wal"), *wal2 = join(aside, "-wal"), *shm = join(c->path, "-shm");
    if (wal && wal2) rename(wal, wal2);
    if (shm) unlink(shm);
    free(wal);
    free(wal2);
    free(shm);
    warn(c, "kernel cache %s %s; moved it to %s and started a new one", c->path, detail, aside);
  }
  free(aside);
done:
  if (fd >= 0) close(fd); /* releases the lock */
  return r;
}

/* Open c->path (a file), moving bad files aside, falling back to memory. */
static int open_file(df_cache *c, df_err *err) {
  char msg[DF_ERR_MSG_MAX];
  for (int attempt = 0; attempt < 5; attempt++) {
    int64_t ver = 0;
    msg[0] = '\0';
    int k = try_open(c, &ver, msg, sizeof msg);
    if (k == OPEN_OK) return 0;
    if (k == OPEN_RETRY) continue;
    if (k == OPEN_FAIL) {
      warn(c, "kernel cache %s: %s; using an in-memory cache", c->path, msg);
      return open_memory(c, err);
    }
    char detail[DF_ERR_MSG_MAX + 64];
    const char *why = "corrupt";
    if (k == OPEN_CORRUPT) snprintf(detail, sizeof detail, "is corrupt (%s)", msg);
    else if (k == OPEN_NEWER) {
      why = "newer";
      snprintf(detail, sizeof detail,
               "has schema version %lld, newer than this dferc's %d", (long long)ver,
               DF_CACHE_SCHEMA);
    } else {
      why = "unknown";
      snprintf(detail, sizeof detail, "is not a dferc kernel cache");
    }
    if (move_aside(c, why, detail)) return open_memory(c, err);
  }
  warn(c, "kernel cache %s keeps changing under this process; using an in-memory cache",
       c->path);
  return open_memory(c, err);
}

df_cache *df_cache_open(const char *path, unsigned flags, df_err *err) {
  df_cache *c = calloc(1, sizeof *c);
  if (!c || !(c->path = resolve_path(path))) {
    free(c);
    df_err_set(err, DF_ENOMEM, "kernel cache: out of memory");
    return NULL;
  }
  c->flags = flags;
  int r;
  if (flags & DF_CACHE_DISABLED) {
    c->mode = DF_CACHE_MODE_DISABLED;
    return c;
  } else if (strcmp(c->path, ":memory:") == 0) {
    r = open_memory(c, err);
  } else if (!*c->path) {
    warn(c, "kernel cache: none of DFERC_CACHE, XDG_CACHE_HOME and HOME is set; "
            "using an in-memory cache");
    r = open_memory(c, err);
  } else {
    r = open_file(c, err);
  }
  if (r) {
    df_cache_close(c);
    return NULL;
  }
  return c;
}

void df_cache_close(df_cache *c) {
  if (!c) return;
  close_db(c);
  free(c->path);
  free(c);
}

const char *df_cache_path(const df_cache *c) { return c->path; }
int df_cache_mode(const df_cache *c) { return c->mode; }

const char *df_cache_mode_name(int mode) {
  switch (mode) {
  case DF_CACHE_MODE_FILE: return "file";
  case DF_CACHE_MODE_MEMORY: return "memory";
  case DF_CACHE_MODE_DISABLED: return "disabled";
  default: return "?";
  }
}

int df_cache_warnings(const df_cache *c, const char **last) {
  if (last) *last = c->warning;
  return c->warnings;
}

/*
** After an operation failed with SQLITE_CORRUPT or SQLITE_NOTADB: move the
** file aside (unless another process did) and open a new one.  Returns 0
** when the handle works again, < 0 (err set) when not even memory does.
*/
static int recover(df_cache *c, const char *msg, df_err *err) {
  if (c->mode != DF_CACHE_MODE_FILE) {
    /* an in-memory database cannot be corrupt on disk: report it */
    return df_err_set(err, DF_EFORMAT, "%s", msg);
  }
  char detail[200];
  snprintf(detail, sizeof detail, "is corrupt (%s)", sqlite3_errstr(c->last_rc));
  if (move_aside(c, "corrupt", detail)) return open_memory(c, err);
  return open_file(c, err);
}

/* A handle whose database is gone (only after running out of memory
** while recovering) reports that instead of calling SQLite. */
static int no_db(df_cache *c, df_err *err) {
  if (c->db) return 0;
  return df_err_set(err, DF_EIO, "%s: kernel cache: no database (an earlier failure closed it)",
                    c->path);
}

/* ---------------------------------------------------------------- get */

/* Copy column i of a row as malloc'ed text ("" when NULL). */
static char *column_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  int n = sqlite3_column_bytes(st, i);
  char *p = malloc((size_t)n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, t, (size_t)n);
  p[n] = '\0';
  return p;
}

/*
** Verify a row whose columns start at `col` in the order size, checksum,
** config, times, data (the blob; NULL when the blob row is missing), and
** whose key is `key`.  Returns NULL when it verifies, else what is wrong.
*/
static const char *verify_row(sqlite3_stmt *st, int col, const char *const key[DF_CACHE_NKEY]) {
  for (int i = 0; i < 5; i++) {
    int t = sqlite3_column_type(st, col + i);
    int want = i < 2 ? SQLITE_INTEGER : i < 4 ? SQLITE_TEXT : SQLITE_BLOB;
    if (t == SQLITE_NULL && i == 4) return "its blob is missing";
    if (t != want) return "a column has the wrong type";
  }
  int64_t size = sqlite3_column_int64(st, col);
  uint64_t sum = (uint64_t)sqlite3_column_int64(st, col + 1);
  const char *config = (const char *)sqlite3_column_text(st, col + 2);
  const char *times = (const char *)sqlite3_column_text(st, col + 3);
  const void *blob = sqlite3_column_blob(st, col + 4);
  int64_t n = sqlite3_column_bytes(st, col + 4);
  if (!config || !times) return "out of memory reading it";
  if ((int64_t)strlen(config) != sqlite3_column_bytes(st, col + 2) ||
      (int64_t)strlen(times) != sqlite3_column_bytes(st, col + 3))
    return "its text holds a NUL byte";
  if (n != size) return "its blob has the wrong size";
  if (row_checksum(key, n ? blob : "", (size_t)n, config, times) != sum)
    return "checksum mismatch";
  return NULL;
}

/* Bump the counters (and the row's hits and use time): bookkeeping, so a
** failure (say, the lock held past the timeout) is dropped, not reported. */
static void count_lookup(df_cache *c, int64_t id, int hit) {
  df_err ignored = {0};
  sqlite3_stmt *st = NULL;
  if (exec(c, "BEGIN IMMEDIATE", &ignored)) goto done;
  if (hit) {
    if (prep(c, &st, "UPDATE entries SET hits = hits + 1, used = ?1 WHERE id = ?2", &ignored) ||
        SQL_CHECK(c, sqlite3_bind_int64(st, 1, (int64_t)time(NULL)), &ignored) ||
        SQL_CHECK(c, sqlite3_bind_int64(st, 2, id), &ignored) ||
        SQL_CHECK(c, sqlite3_step(st), &ignored))
      goto done;
  }
  if (exec(c, hit ? "UPDATE counters SET value = value + 1 WHERE name = 'hits'"
                  : "UPDATE counters SET value = value + 1 WHERE name = 'misses'",
           &ignored))
    goto done;
  exec(c, "COMMIT", &ignored);
done:
  sqlite3_finalize(st);
  rollback(c);
  c->last_rc = 0;
}

/* count: 2 hits and misses, 1 hits only (probe), 0 nothing (peek). */
static int get_once(df_cache *c, const char *const key[DF_CACHE_NKEY], df_cache_entry *out,
                    int count, df_err *err) {
  sqlite3_stmt *st;
  if (prep(c, &st,
           "SELECT e.id, e.size, e.checksum, e.config, e.times, b.data, e.created, e.used, e.hits "
           "FROM entries e LEFT JOIN blobs b ON b.id = e.id WHERE " KEY_WHERE,
           err))
    return DF_EIO;
  int r = bind_key(c, st, 1, key, err);
  int rc = r ? SQLITE_DONE : sqlite3_step(st);
  if (!r) r = SQL_CHECK(c, rc, err);
  int hit = 0;
  int64_t id = 0;
  if (!r && rc == SQLITE_ROW && !verify_row(st, 1, key)) {
    id = sqlite3_column_int64(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 5);
    out->blob = malloc(n ? n : 1);
    out->config = column_text(st, 3);
    out->times = column_text(st, 4);
    if (!out->blob || !out->config || !out->times) {
      df_cache_entry_free(out);
      r = df_err_set(err, DF_ENOMEM, "%s: kernel cache: out of memory", c->path);
    } else {
      if (n) memcpy(out->blob, sqlite3_column_blob(st, 5), n);
      out->size = n;
      out->created = sqlite3_column_int64(st, 6);
      out->used = sqlite3_column_int64(st, 7);
      out->hits = sqlite3_column_int64(st, 8);
      hit = 1;
    }
  }
  sqlite3_finalize(st);
  if (r) return r;
  if ((hit && count >= 1) || count == 2) count_lookup(c, id, hit);
  return hit;
}

static int get_impl(df_cache *c, const df_cache_key *k, df_cache_entry *out, int count, df_err *err) {
  memset(out, 0, sizeof *out);
  if (check_key(k, err)) return DF_EINVAL;
  if (c->mode == DF_CACHE_MODE_DISABLED) {
    if (count == 2) c->run_misses++;
    return 0;
  }
  if (no_db(c, err)) return DF_EIO;
  const char *key[DF_CACHE_NKEY];
  key_array(k, key);
  df_err e = {0};
  c->last_rc = 0;
  int r = get_once(c, key, out, count, &e);
  if (r < 0 && is_corrupt(c->last_rc)) {
    df_err e2 = {0};
    if (recover(c, e.msg, &e2)) return df_err_set(err, e2.code, "%s", e2.msg);
    r = 0;
  } else if (r < 0) {
    return df_err_set(err, e.code, "%s", e.msg);
  }
  if (r == 1 && count >= 1) c->run_hits++;
  else if (r != 1 && count == 2) c->run_misses++;
  return r;
}

int df_cache_get(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err) {
  return get_impl(c, k, out, 2, err);
}

int df_cache_probe(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err) {
  return get_impl(c, k, out, 1, err);
}

int df_cache_peek(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err) {
  return get_impl(c, k, out, 0, err);
}

void df_cache_entry_free(df_cache_entry *e) {
  if (!e) return;
  free(e->blob);
  free(e->config);
  free(e->times);
  memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------- put */

static int put_once(df_cache *c, const char *const key[DF_CACHE_NKEY], const void *blob,
                    size_t size, const char *config, const char *times, df_err *err) {
  sqlite3_stmt *st = NULL;
  int result = DF_CACHE_STORED;
  if (exec(c, "BEGIN IMMEDIATE", err)) goto fail;
  /* a valid row of this key stays (first committed wins); a bad one goes */
  if (prep(c, &st,
           "SELECT e.id, e.size, e.checksum, e.config, e.times, b.data "
           "FROM entries e LEFT JOIN blobs b ON b.id = e.id WHERE " KEY_WHERE,
           err) ||
      bind_key(c, st, 1, key, err))
    goto fail;
  int rc = sqlite3_step(st);
  if (SQL_CHECK(c, rc, err)) goto fail;
  int64_t old = -1;
  if (rc == SQLITE_ROW) {
    if (!verify_row(st, 1, key)) result = DF_CACHE_KEPT;
    else old = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  st = NULL;
  if (result == DF_CACHE_KEPT) {
    if (exec(c, "COMMIT", err)) goto fail;
    return result;
  }
  if (old >= 0) {
    if (prep(c, &st, "DELETE FROM entries WHERE id = ?1", err) ||
        SQL_CHECK(c, sqlite3_bind_int64(st, 1, old), err) || SQL_CHECK(c, sqlite3_step(st), err))
      goto fail;
    sqlite3_finalize(st);
    st = NULL;
    /* and any blob without an entry (only damage makes them) */
    if (exec(c, "DELETE FROM blobs WHERE id NOT IN (SELECT id FROM entries)", err)) goto fail;
  }
  int64_t now = (int64_t)time(NULL);
  uint64_t sum = row_checksum(key, size ? blob : "", size, config, times);
  if (prep(c, &st,
           "INSERT INTO entries (" KEY_COLS ", size, checksum, config, times, created, used, hits) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, 0)",
           err) ||
      bind_key(c, st, 1, key, err) ||
      SQL_CHECK(c, sqlite3_bind_int64(st, 9, (int64_t)size), err) ||
      SQL_CHECK(c, sqlite3_bind_int64(st, 10, (int64_t)sum), err) ||
      SQL_CHECK(c, sqlite3_bind_text(st, 11, config, -1, SQLITE_STATIC), err) ||
      SQL_CHECK(c, sqlite3_bind_text(st, 12, times, -1, SQLITE_STATIC), err) ||
      SQL_CHECK(c, sqlite3_bind_int64(st, 13, now), err) || SQL_CHECK(c, sqlite3_step(st), err))
    goto fail;
  sqlite3_finalize(st);
  int64_t id = sqlite3_last_insert_rowid(c->db);
  /* a zero-length blob is bound as X'' (a NULL pointer would bind NULL) */
  if (prep(c, &st, "INSERT OR REPLACE INTO blobs (id, data) VALUES (?1, ?2)", err) ||
      SQL_CHECK(c, sqlite3_bind_int64(st, 1, id), err) ||
      SQL_CHECK(c, sqlite3_bind_blob64(st, 2, size ? blob : "", size, SQLITE_STATIC), err) ||
      SQL_CHECK(c, sqlite3_step(st), err))
    goto fail;
  sqlite3_finalize(st);
  st = NULL;
  if (exec(c, "COMMIT", err)) goto fail;
  return result;
fail:
  sqlite3_finalize(st);
  rollback(c);
  return err && err->code ? err->code : DF_EIO;
}

int df_cache_put(df_cache *c, const df_cache_key *k, const void *blob, size_t size,
                 const char *config, const char *times, df_err *err) {
  if (check_key(k, err)) return DF_EINVAL;
  if (size && !blob) return df_err_set(err, DF_EINVAL, "kernel cache: put of %zu bytes from NULL", size);
  if (c->mode == DF_CACHE_MODE_DISABLED) return DF_CACHE_DROPPED;
  if (no_db(c, err)) return DF_EIO;
  const char *key[DF_CACHE_NKEY];
  key_array(k, key);
  if (!config) config = "";
  if (!times) times = "";
  int r = DF_EIO;
  for (int attempt = 0; attempt < 2; attempt++) {
    df_err e = {0};
    c->last_rc = 0;
    r = put_once(c, key, blob, size, config, times, &e);
    if (r >= 0) break;
    if (attempt == 0 && is_corrupt(c->last_rc)) {
      df_err e2 = {0};
      if (recover(c, e.msg, &e2)) return df_err_set(err, e2.code, "%s", e2.msg);
      continue; /* once more, into the new file */
    }
    return df_err_set(err, e.code ? e.code : DF_EIO, "%s", e.msg);
  }
  if (r == DF_CACHE_STORED) c->run_stores++;
  return r;
}

/* ---------------------------------------------------------------- stats, list, clear */

/* Run stats, list, clear or explain; on corruption move the file aside,
** open a new one and run it once more there (a listing may have seen some
** rows of the old file by then). */
static int with_recovery(df_cache *c, int (*op)(df_cache *, void *, df_err *), void *arg,
                         df_err *err) {
  df_err e = {0};
  c->last_rc = 0;
  int r = no_db(c, &e) ? DF_EIO : op(c, arg, &e);
  if (r < 0 && is_corrupt(c->last_rc)) {
    df_err e2 = {0};
    if (recover(c, e.msg, &e2)) return df_err_set(err, e2.code, "%s", e2.msg);
    memset(&e, 0, sizeof e);
    r = op(c, arg, &e);
  }
  if (r < 0) return df_err_set(err, e.code ? e.code : DF_EIO, "%s", e.msg);
  return r;
}

static int stats_op(df_cache *c, void *arg, df_err *err) {
  df_cache_stats *s = arg;
  sqlite3_stmt *st;
  if (prep(c, &st,
           "SELECT (SELECT count(*) FROM entries), (SELECT coalesce(sum(size), 0) FROM entries), "
           "(SELECT value FROM counters WHERE name = 'hits'), "
           "(SELECT value FROM counters WHERE name = 'misses')",
           err))
    return DF_EIO;
  int rc = sqlite3_step(st);
  int r = SQL_CHECK(c, rc, err);
  if (!r && rc == SQLITE_ROW) {
    s->entries = sqlite3_column_int64(st, 0);
    s->bytes = sqlite3_column_int64(st, 1);
    s->hits = sqlite3_column_int64(st, 2);
    s->misses = sqlite3_column_int64(st, 3);
  }
  sqlite3_finalize(st);
  return r;
}

int df_cache_stats_get(df_cache *c, df_cache_stats *out, df_err *err) {
  memset(out, 0, sizeof *out);
  int r = 0;
  if (c->mode != DF_CACHE_MODE_DISABLED) r = with_recovery(c, stats_op, out, err);
  out->run_hits = c->run_hits;
  out->run_misses = c->run_misses;
  out->run_stores = c->run_stores;
  if (c->mode == DF_CACHE_MODE_FILE) {
    struct stat st;
    if (stat(c->path, &st) == 0) out->file_bytes += st.st_size;
    char *wal = join(c->path, "-wal");
    if (wal && stat(wal, &st) == 0) out->file_bytes += st.st_size;
    free(wal);
  }
  return r < 0 ? r : 0;
}

typedef struct {
  int (*fn)(const df_cache_info *, void *);
  void *ud;
} list_arg;

static int list_op(df_cache *c, void *arg, df_err *err) {
  list_arg *la = arg;
  sqlite3_stmt *st;
  if (prep(c, &st,
           "SELECT " KEY_COLS ", size, hits, created, used, config, times FROM entries "
           "ORDER BY " KEY_COLS,
           err))
    return DF_EIO;
  int r = 0;
  for (;;) {
    int rc = sqlite3_step(st);
    if ((r = SQL_CHECK(c, rc, err)) || rc != SQLITE_ROW) break;
    df_cache_info info = {0};
    for (int i = 0; i < DF_CACHE_NKEY; i++) {
      const char *v = (const char *)sqlite3_column_text(st, i);
      df_cache_key_set(&info.key, i, v ? v : "");
    }
    info.size = sqlite3_column_int64(st, DF_CACHE_NKEY);
    info.hits = sqlite3_column_int64(st, DF_CACHE_NKEY + 1);
    info.created = sqlite3_column_int64(st, DF_CACHE_NKEY + 2);
    info.used = sqlite3_column_int64(st, DF_CACHE_NKEY + 3);
    const char *config = (const char *)sqlite3_column_text(st, DF_CACHE_NKEY + 4);
    const char *times = (const char *)sqlite3_column_text(st, DF_CACHE_NKEY + 5);
    info.config = config ? config : "";
    info.times = times ? times : "";
    if ((r = la->fn(&info, la->ud)) != 0) break;
  }
  sqlite3_finalize(st);
  return r;
}

int df_cache_list(df_cache *c, int (*fn)(const df_cache_info *info, void *ud), void *ud,
                  df_err *err) {
  if (c->mode == DF_CACHE_MODE_DISABLED) return 0;
  list_arg la = {fn, ud};
  return with_recovery(c, list_op, &la, err);
}

static int clear_op(df_cache *c, void *arg, df_err *err) {
  int64_t *n = arg;
  if (exec(c, "BEGIN IMMEDIATE", err) || query_int(c, "SELECT count(*) FROM entries", n, err) ||
      exec(c,
           "DELETE FROM entries; DELETE FROM blobs; "
           "UPDATE counters SET value = 0; COMMIT",
           err)) {
    rollback(c);
    return DF_EIO;
  }
  /* give the space back; best effort: the rows are gone either way */
  df_err ignored = {0};
  if (c->mode == DF_CACHE_MODE_FILE) exec(c, "VACUUM", &ignored);
  c->last_rc = 0;
  return 0;
}

int64_t df_cache_clear(df_cache *c, df_err *err) {
  if (c->mode == DF_CACHE_MODE_DISABLED) return 0;
  int64_t n = 0;
  int r = with_recovery(c, clear_op, &n, err);
  return r < 0 ? r : n;
}

/* ---------------------------------------------------------------- explain */

typedef struct {
  const df_cache_key *want;
  df_cache_explain *out;
  int64_t best_id;
} explain_arg;

/* Score an entry against the given fields: same ir_hash first, then the
** number of matching fields. */
static int score(const df_cache_key *want, sqlite3_stmt *st, int *matches) {
  int m = 0, same_hash = 0;
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    const char *w = df_cache_key_field(want, i);
    const char *v = (const char *)sqlite3_column_text(st, 1 + i);
    if (!w) continue;
    if (v && strcmp(w, v) == 0) {
      m++;
      if (i == DF_CACHE_KEY_ir_hash) same_hash = 1;
    }
  }
  *matches = m;
  return same_hash * (DF_CACHE_NKEY + 1) + m;
}

static int explain_op(df_cache *c, void *arg, df_err *err) {
  explain_arg *xa = arg;
  df_cache_explain *x = xa->out;
  sqlite3_stmt *st;
  /* newest first, then first stored: the first best score wins ties */
  if (prep(c, &st,
           "SELECT id, " KEY_COLS ", size, hits, created, used FROM entries "
           "ORDER BY created DESC, id ASC",
           err))
    return DF_EIO;
  int r = 0, best = -1;
  x->entries = 0;
  for (;;) {
    int rc = sqlite3_step(st);
    if ((r = SQL_CHECK(c, rc, err)) || rc != SQLITE_ROW) break;
    x->entries++;
    int m, s = score(xa->want, st, &m);
    if (s <= best) continue;
    best = s;
    xa->best_id = sqlite3_column_int64(st, 0);
    x->n_differ = 0;
    for (int i = 0; i < DF_CACHE_NKEY; i++) {
      free((char *)df_cache_key_field(&x->nearest, i));
      const char *v = (const char *)sqlite3_column_text(st, 1 + i);
      char *copy = xstrdup(v ? v : "");
      df_cache_key_set(&x->nearest, i, copy);
      if (!copy) r = df_err_set(err, DF_ENOMEM, "%s: kernel cache: out of memory", c->path);
      const char *w = df_cache_key_field(xa->want, i);
      if (w && (!v || strcmp(w, v) != 0)) x->differ[x->n_differ++] = i;
    }
    x->size = sqlite3_column_int64(st, 1 + DF_CACHE_NKEY);
    x->hits = sqlite3_column_int64(st, 2 + DF_CACHE_NKEY);
    x->created = sqlite3_column_int64(st, 3 + DF_CACHE_NKEY);
    x->used = sqlite3_column_int64(st, 4 + DF_CACHE_NKEY);
    if (r) break;
  }
  sqlite3_finalize(st);
  if (r) return r;
  if (x->entries == 0) {
    x->status = DF_CACHE_X_EMPTY;
    return 0;
  }
  if (x->n_differ > 0) {
    x->status = DF_CACHE_X_NEAREST;
    return 0;
  }
  /* every given field matches: does the row verify? */
  if (prep(c, &st,
           "SELECT e.id, e.size, e.checksum, e.config, e.times, b.data "
           "FROM entries e LEFT JOIN blobs b ON b.id = e.id WHERE e.id = ?1",
           err))
    return DF_EIO;
  int rc = SQLITE_DONE;
  if (!(r = SQL_CHECK(c, sqlite3_bind_int64(st, 1, xa->best_id), err))) {
    rc = sqlite3_step(st);
    r = SQL_CHECK(c, rc, err);
  }
  if (!r) {
    const char *key[DF_CACHE_NKEY];
    key_array(&x->nearest, key);
    const char *bad = rc == SQLITE_ROW ? verify_row(st, 1, key) : "it vanished";
    x->status = bad ? DF_CACHE_X_INVALID : DF_CACHE_X_HIT;
    snprintf(x->reason, sizeof x->reason, "%s", bad ? bad : "");
  }
  sqlite3_finalize(st);
  return r;
}

int df_cache_explain_key(df_cache *c, const df_cache_key *k, df_cache_explain *out,
                         df_err *err) {
  memset(out, 0, sizeof *out);
  if (!k) return df_err_set(err, DF_EINVAL, "kernel cache: no key");
  if (k->ir_hash && check_ir_hash(k->ir_hash, err)) return DF_EINVAL;
  if (c->mode == DF_CACHE_MODE_DISABLED) {
    out->status = DF_CACHE_X_DISABLED;
    return 0;
  }
  explain_arg xa = {k, out, -1};
  int r = with_recovery(c, explain_op, &xa, err);
  if (r < 0) df_cache_explain_free(out);
  return r < 0 ? r : 0;
}

void df_cache_explain_free(df_cache_explain *x) {
  if (!x) return;
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    free((char *)df_cache_key_field(&x->nearest, i));
    df_cache_key_set(&x->nearest, i, NULL);
  }
}

const char *df_cache_explain_status_name(int status) {
  switch (status) {
  case DF_CACHE_X_HIT: return "hit";
  case DF_CACHE_X_INVALID: return "invalid";
  case DF_CACHE_X_NEAREST: return "nearest";
  case DF_CACHE_X_EMPTY: return "empty";
  case DF_CACHE_X_DISABLED: return "disabled";
  default: return "?";
  }
}

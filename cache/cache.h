/*
** cache.h -- the kernel cache: compiled kernels in one SQLite database.
**
** cache/ stores opaque blobs under keys, for the code generators and the
** runtime, and knows nothing of either.  A key is eight named text fields
** (DF_CACHE_KEY_FIELDS below: kernel IR hash, backend, device, arch,
** toolchain, dferc version, compile options, tuning parameters), so that
** df_cache_explain() can say which field made a lookup miss.  A value is a
** binary blob (object code, a cubin) with the chosen configuration and the
** measured times (both opaque text, e.g. JSON), a 64-bit FNV-1a checksum
** over key, blob, configuration and times, created/used timestamps (Unix
** seconds) and a hit count.
**
** The database file is, in order: the path given to df_cache_open(),
** $DFERC_CACHE, $XDG_CACHE_HOME/dferc/kernels.db, $HOME/.cache/dferc/
** kernels.db; ":memory:" is a private in-memory cache.  Its folder is
** created when missing.  The file is in WAL mode with a 10 s busy timeout,
** so any number of processes may share it; every write is one BEGIN
** IMMEDIATE transaction.
**
** Invariants:
** - A get returns a complete row whose checksum verifies, or a miss.  A
**   row that fails verification (a flipped byte, a torn or missing blob)
**   is a miss, and the next put of its key replaces it.
** - The first committed row of a key wins: a later put of the same key
**   leaves a valid row unchanged (DF_CACHE_KEPT).  Ranks of one job that
**   race to store a kernel therefore all read back the same row: a caller
**   that must agree with the other ranks reads it back with df_cache_get()
**   after a put that returned DF_CACHE_KEPT.
** - Nothing in the file can crash the process or be misread.  A corrupt,
**   truncated or non-SQLite file, a database with a newer schema
**   (PRAGMA user_version) or another program's database is moved aside
**   (renamed to PATH.corrupt-TIME, PATH.newer-TIME, PATH.unknown-TIME,
**   with its -wal file) and a new one is started, with ONE warning line
**   on stderr.  An older schema is migrated in place.  A location where
**   the folder cannot be created or the file cannot be opened for writing
**   gives an in-memory cache, with one warning.  Corruption found later,
**   by a get or a put, is handled the same way (the get misses, the put
**   goes to the new file).
** - DF_CACHE_DISABLED ("no cache", the CLI's --no-cache): every lookup
**   misses, every store is dropped, nothing is opened.
**
** A df_cache is one SQLite connection: use it from one thread at a time,
** and do not carry it across fork().  Errors fill a df_err whose message
** starts with the database path; SQLite failures add sqlite3_errmsg and
** the file:line of the failing call.
*/
#ifndef DF_CACHE_H
#define DF_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/err.h"

/* The key fields, in order: X(name, description).  The names are the
** database columns, the fields of df_cache_key, the Lua key table's
** fields and what explain reports. */
#define DF_CACHE_KEY_FIELDS(X)                                                  \
  X(ir_hash, "kernel IR hash (16 or 32 lowercase hex digits)")                  \
  X(backend, "backend name (cpu, cuda, ...)")                                   \
  X(device, "device name")                                                      \
  X(arch, "device architecture or CPU features")                                \
  X(toolchain, "toolchain versions (\"llvm 14.0.6\", \"nvrtc 13.0; driver 13.0\")") \
  X(dferc_version, "dferc version")                                             \
  X(options, "compile options")                                                 \
  X(tuning, "tuning parameters")

enum {
#define DF_CACHE_X_ENUM(name, desc) DF_CACHE_KEY_##name,
  DF_CACHE_KEY_FIELDS(DF_CACHE_X_ENUM)
#undef DF_CACHE_X_ENUM
  DF_CACHE_NKEY
};

/* A key: NUL-terminated text fields.  For get and put a NULL field is the
** empty string and ir_hash and backend must be given; for explain a NULL
** field is "not given" and is not compared. */
typedef struct df_cache_key {
#define DF_CACHE_X_FIELD(name, desc) const char *name;
  DF_CACHE_KEY_FIELDS(DF_CACHE_X_FIELD)
#undef DF_CACHE_X_FIELD
} df_cache_key;

/* Field i (0 <= i < DF_CACHE_NKEY) of a key, its name and description. */
const char *df_cache_key_field(const df_cache_key *k, int i);
void df_cache_key_set(df_cache_key *k, int i, const char *value);
const char *df_cache_key_name(int i);
const char *df_cache_key_desc(int i);
/* The index of the field called `name`, or -1. */
int df_cache_key_index(const char *name);

/* A row read by df_cache_get(); the caller owns it (df_cache_entry_free). */
typedef struct df_cache_entry {
  unsigned char *blob;  /* malloc'ed, `size` bytes (never NULL after a hit) */
  size_t size;
  char *config;         /* malloc'ed text */
  char *times;          /* malloc'ed text */
  int64_t created, used;/* Unix seconds; `used` is the previous use */
  int64_t hits;         /* hits before this one */
} df_cache_entry;

void df_cache_entry_free(df_cache_entry *e);

typedef struct df_cache df_cache;

/* Open flags. */
enum {
  DF_CACHE_DISABLED = 1, /* no cache: lookups miss, stores are dropped */
  DF_CACHE_QUIET = 2     /* no warnings on stderr (still counted) */
};

/* What a handle stores into. */
enum { DF_CACHE_MODE_FILE, DF_CACHE_MODE_MEMORY, DF_CACHE_MODE_DISABLED };

/* Open the cache at `path` (NULL or "": the default, see above).  Never
** fails because of the file: see the invariants.  Returns NULL (with err
** set) only when out of memory. */
df_cache *df_cache_open(const char *path, unsigned flags, df_err *err);
void df_cache_close(df_cache *c);

/* The database path (the path that would be used when disabled; "" when
** none could be resolved) and the mode. */
const char *df_cache_path(const df_cache *c);
int df_cache_mode(const df_cache *c);
const char *df_cache_mode_name(int mode); /* "file", "memory", "disabled" */

/* The warnings this handle gave (printed on stderr unless DF_CACHE_QUIET),
** and the last one's text ("" when none). */
int df_cache_warnings(const df_cache *c, const char **last);

/* Look up a key: 1 hit (out filled), 0 miss, < 0 error (DF_EINVAL for a
** bad key, DF_EIO for a database error such as a lock held past the busy
** timeout).  `out` is zeroed first; free it with df_cache_entry_free()
** after a hit.  A hit bumps the row's hit count and use time. */
int df_cache_get(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err);

/* The same, except that a miss is not counted (neither in the database's
** misses nor in run_misses): for a lookup that is expected to miss, such as
** a kernel's tuned winner before any tuning; a hit counts as a hit. */
int df_cache_probe(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err);

/* The same, counting nothing: a look ahead at what a later get will find
** (the cpu backend's parallel compile of the misses). */
int df_cache_peek(df_cache *c, const df_cache_key *k, df_cache_entry *out, df_err *err);

/* Store a value.  `blob` (`size` bytes; may be NULL when size is 0),
** `config` and `times` are copied (NULL is "").  Returns DF_CACHE_STORED,
** DF_CACHE_KEPT (a valid row of this key was already there and stays),
** DF_CACHE_DROPPED (the cache is disabled), or < 0. */
enum { DF_CACHE_DROPPED = 0, DF_CACHE_STORED = 1, DF_CACHE_KEPT = 2 };
int df_cache_put(df_cache *c, const df_cache_key *k, const void *blob, size_t size,
                 const char *config, const char *times, df_err *err);

typedef struct df_cache_stats {
  int64_t entries;        /* rows */
  int64_t bytes;          /* total blob bytes */
  int64_t hits, misses;   /* lookups since the database was created or cleared */
  int64_t run_hits, run_misses, run_stores; /* this handle's */
  int64_t file_bytes;     /* database file plus its -wal (0 when not a file) */
} df_cache_stats;

int df_cache_stats_get(df_cache *c, df_cache_stats *out, df_err *err);

/* One listed row; the pointers are valid during the callback only. */
typedef struct df_cache_info {
  df_cache_key key;
  int64_t size, hits, created, used;
  const char *config, *times;
} df_cache_info;

/* Call fn on every row, in key order.  fn returns 0 to go on; a non-zero
** return stops the walk and is returned.  Returns 0 or < 0 on error. */
int df_cache_list(df_cache *c, int (*fn)(const df_cache_info *info, void *ud), void *ud,
                  df_err *err);

/* Remove every row and reset the hit and miss counters; returns the number
** of rows removed or < 0. */
int64_t df_cache_clear(df_cache *c, df_err *err);

/* Why a key misses.  The nearest entry is the one that matches the most
** given fields, preferring one with the same ir_hash, then the newest,
** then the first stored; so the same database gives the same answer. */
enum {
  DF_CACHE_X_HIT,      /* an entry matches every given field and verifies */
  DF_CACHE_X_INVALID,  /* an entry matches but fails verification (reason) */
  DF_CACHE_X_NEAREST,  /* no entry matches: nearest and the differing fields */
  DF_CACHE_X_EMPTY,    /* the cache holds no entries */
  DF_CACHE_X_DISABLED  /* the cache is disabled */
};

typedef struct df_cache_explain {
  int status;                 /* DF_CACHE_X_* */
  int64_t entries;            /* rows in the cache */
  df_cache_key nearest;       /* the matching or nearest entry's key (malloc'ed
                                 fields; all NULL when there is none) */
  int64_t size, hits, created, used; /* of that entry */
  int n_differ;
  int differ[DF_CACHE_NKEY];  /* the given fields that differ, in field order */
  char reason[200];           /* for DF_CACHE_X_INVALID: what is wrong */
} df_cache_explain;

int df_cache_explain_key(df_cache *c, const df_cache_key *k, df_cache_explain *out,
                         df_err *err);
void df_cache_explain_free(df_cache_explain *x);
const char *df_cache_explain_status_name(int status); /* "hit", "invalid", ... */

/* 64-bit FNV-1a, continuing from h (start with DF_CACHE_FNV_OFFSET). */
#define DF_CACHE_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t df_cache_fnv1a64(uint64_t h, const void *data, size_t n);

/* Fault injection for tests: the nth SQLite call checked from now on
** (n >= 1) fails as if SQLite returned SQLITE_IOERR; 0 turns it off.
** Process-wide. */
void df_cache_inject_fault(long nth);

#endif

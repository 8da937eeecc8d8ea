/*
** test_cache.c -- the kernel cache (cache/cache.h): round trips, misses on
** every key field with explain naming it, damaged rows, damaged and foreign
** files moved aside with one warning, the in-memory fallback, the disabled
** mode, statistics, listing, clearing and injected SQLite faults.
** Every test works in its own folder under a fresh temporary folder.
*/
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "tests/check.h"

static char root[256];

/* A path under this run's folder: "<root>/<name>" (static buffer ring). */
static const char *tpath(const char *fmt, const char *name) {
  static char bufs[8][512];
  static int next = 0;
  char *b = bufs[next++ % 8];
  char rel[256];
  snprintf(rel, sizeof rel, fmt, name);
  snprintf(b, 512, "%s/%s", root, rel);
  return b;
}

static df_cache_key base_key(void) {
  df_cache_key k = {
      .ir_hash = "0123456789abcdef",
      .backend = "cuda",
      .device = "NVIDIA H100 80GB HBM3",
      .arch = "sm_90",
      .toolchain = "nvrtc 13.0; driver 13.0",
      .dferc_version = "0.1.0",
      .options = "-O3 --use_fast_math",
      .tuning = "bm=128 bn=64",
  };
  return k;
}

/* A deterministic blob of n bytes for seed. */
static unsigned char *make_blob(size_t n, unsigned seed) {
  unsigned char *b = malloc(n ? n : 1);
  uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (unsigned char)x;
  }
  return b;
}

static df_cache *open_q(const char *path) {
  df_err e = {0};
  df_cache *c = df_cache_open(path, DF_CACHE_QUIET, &e);
  if (!c) printf("# open %s: %s\n", path, e.msg);
  return c;
}

static int put_str(df_cache *c, const df_cache_key *k, const char *blob) {
  df_err e = {0};
  int r = df_cache_put(c, k, blob, strlen(blob), "{\"cfg\":1}", "{\"ms\":[1.5,1.4]}", &e);
  if (r < 0) printf("# put: %s\n", e.msg);
  return r;
}

/* 1 when the key hits with exactly `blob`, 0 on a miss, -1 otherwise. */
static int get_is(df_cache *c, const df_cache_key *k, const char *blob) {
  df_err e = {0};
  df_cache_entry ent;
  int r = df_cache_get(c, k, &ent, &e);
  if (r < 0) {
    printf("# get: %s\n", e.msg);
    return -1;
  }
  if (r == 0) return 0;
  int same = ent.size == strlen(blob) && memcmp(ent.blob, blob, ent.size) == 0;
  df_cache_entry_free(&ent);
  return same ? 1 : -1;
}

/* Run SQL on the database file directly, as another program would. */
static int raw_exec(const char *path, const char *sql) {
  sqlite3 *db;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) printf("# raw_exec %s: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_close(db);
  return rc;
}

static int64_t raw_int(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  int64_t v = -1;
  if (sqlite3_open(path, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return v;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

/* The number of files in `dir` whose name starts with `prefix`. */
static int count_files(const char *dir, const char *prefix) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "ls -1 '%s' 2>/dev/null | grep -c '^%s'", dir, prefix);
  FILE *p = popen(cmd, "r");
  int n = 0;
  if (p) {
    if (fscanf(p, "%d", &n) != 1) n = 0;
    pclose(p);
  }
  return n;
}

/* Capture stderr into a file between begin and end; end returns the
** number of lines written, and the text in buf. */
static int saved_stderr = -1;
static void capture_begin(const char *file) {
  fflush(stderr);
  saved_stderr = dup(2);
  int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 2);
  close(fd);
}
static int capture_end(const char *file, char *buf, size_t bufsz) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  buf[0] = '\0';
  FILE *f = fopen(file, "r");
  int lines = 0;
  if (f) {
    size_t n = fread(buf, 1, bufsz - 1, f);
    buf[n] = '\0';
    fclose(f);
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
  }
  return lines;
}

static void mkdir_p(const char *d) { mkdir(d, 0755); }

/* ---------------------------------------------------------------- tests */

static void test_round_trip(void) {
  mkdir_p(tpath("%s", "rt"));
  const char *db = tpath("%s/sub/dir/kernels.db", "rt"); /* folders created */
  df_cache *c = open_q(db);
  CHECK(c);
  if (!c) return;
  CHECK(df_cache_mode(c) == DF_CACHE_MODE_FILE);
  CHECK(strcmp(df_cache_path(c), db) == 0);
  CHECK(df_cache_warnings(c, NULL) == 0);
  df_cache_key k = base_key();
  size_t n = 300000; /* spans many overflow pages */
  unsigned char *blob = make_blob(n, 1);
  df_err e = {0};
  CHECK(df_cache_put(c, &k, blob, n, "{\"tile\":[128,64]}", "[0.25,0.24]", &e) == DF_CACHE_STORED);
  df_cache_entry ent;
  CHECK(df_cache_get(c, &k, &ent, &e) == 1);
  CHECK(ent.size == n && memcmp(ent.blob, blob, n) == 0);
  CHECK(strcmp(ent.config, "{\"tile\":[128,64]}") == 0);
  CHECK(strcmp(ent.times, "[0.25,0.24]") == 0);
  CHECK(ent.hits == 0 && ent.created > 1600000000 && ent.used >= ent.created);
  df_cache_entry_free(&ent);
  /* the second get sees the first one's hit */
  CHECK(df_cache_get(c, &k, &ent, &e) == 1);
  CHECK(ent.hits == 1);
  df_cache_entry_free(&ent);
  /* first committed wins: a second put of the key keeps the row */
  unsigned char *other = make_blob(10, 2);
  CHECK(df_cache_put(c, &k, other, 10, "other", "", &e) == DF_CACHE_KEPT);
  CHECK(df_cache_get(c, &k, &ent, &e) == 1);
  CHECK(ent.size == n && strcmp(ent.config, "{\"tile\":[128,64]}") == 0);
  df_cache_entry_free(&ent);
  df_cache_close(c);
  /* another handle (another process would do the same) reads the same row */
  c = open_q(db);
  CHECK(c && df_cache_get(c, &k, &ent, &e) == 1);
  CHECK(ent.size == n && memcmp(ent.blob, blob, n) == 0 && ent.hits == 3);
  df_cache_entry_free(&ent);
  /* an empty blob and NULL config/times are values too */
  df_cache_key k2 = base_key();
  k2.ir_hash = "00000000000000000000000000000001";
  k2.tuning = NULL;
  CHECK(df_cache_put(c, &k2, NULL, 0, NULL, NULL, &e) == DF_CACHE_STORED);
  CHECK(df_cache_get(c, &k2, &ent, &e) == 1);
  CHECK(ent.size == 0 && ent.blob && strcmp(ent.config, "") == 0 && strcmp(ent.times, "") == 0);
  df_cache_entry_free(&ent);
  k2.tuning = ""; /* NULL is "" */
  CHECK(df_cache_get(c, &k2, &ent, &e) == 1);
  df_cache_entry_free(&ent);
  CHECK(e.code == 0);
  df_cache_close(c);
  free(blob);
  free(other);
}

/* df_cache_probe: a hit counts, a miss does not */
static void test_probe(void) {
  df_cache *c = open_q(":memory:");
  CHECK(c);
  if (!c) return;
  df_cache_key k = base_key();
  df_err e = {0};
  df_cache_entry ent;
  df_cache_stats st;
  CHECK(df_cache_probe(c, &k, &ent, &e) == 0);
  CHECK(df_cache_stats_get(c, &st, &e) == 0 && st.misses == 0 && st.run_misses == 0 && st.hits == 0);
  CHECK(df_cache_put(c, &k, "abc", 3, "cfg", "", &e) == DF_CACHE_STORED);
  CHECK(df_cache_probe(c, &k, &ent, &e) == 1);
  CHECK(ent.size == 3 && memcmp(ent.blob, "abc", 3) == 0 && strcmp(ent.config, "cfg") == 0);
  df_cache_entry_free(&ent);
  CHECK(df_cache_stats_get(c, &st, &e) == 0 && st.hits == 1 && st.run_hits == 1 && st.misses == 0);
  k.tuning = "other";
  CHECK(df_cache_get(c, &k, &ent, &e) == 0);
  CHECK(df_cache_stats_get(c, &st, &e) == 0 && st.misses == 1 && st.run_misses == 1);
  CHECK(e.code == 0);
  df_cache_close(c);
}

static void test_each_field_misses(void) {
  const char *db = tpath("%s.db", "fields");
  df_cache *c = open_q(db);
  CHECK(c);
  if (!c) return;
  df_cache_key k = base_key();
  CHECK(put_str(c, &k, "kernel") == DF_CACHE_STORED);
  /* a decoy with another ir_hash that matches more fields never wins over
  ** the same ir_hash */
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    df_cache_key k2 = base_key();
    char changed[128];
    if (i == DF_CACHE_KEY_ir_hash) snprintf(changed, sizeof changed, "fedcba9876543210");
    else snprintf(changed, sizeof changed, "%s+changed", df_cache_key_field(&k, i));
    df_cache_key_set(&k2, i, changed);
    CHECK(get_is(c, &k2, "kernel") == 0);
    df_err e = {0};
    df_cache_explain x;
    CHECK(df_cache_explain_key(c, &k2, &x, &e) == 0);
    CHECK(x.status == DF_CACHE_X_NEAREST);
    CHECK(x.n_differ == 1 && x.differ[0] == i);
    CHECK(x.entries == 1);
    CHECK(strcmp(df_cache_key_field(&x.nearest, i), df_cache_key_field(&k, i)) == 0);
    df_cache_explain_free(&x);
    if (check_group_failed) {
      printf("# field %s\n", df_cache_key_name(i));
      break;
    }
  }
  /* the exact key: a hit; a partial key compares only the given fields */
  df_err e = {0};
  df_cache_explain x;
  CHECK(df_cache_explain_key(c, &k, &x, &e) == 0 && x.status == DF_CACHE_X_HIT);
  df_cache_explain_free(&x);
  df_cache_key part = {.ir_hash = k.ir_hash, .toolchain = "llvm 14.0.6"};
  CHECK(df_cache_explain_key(c, &part, &x, &e) == 0 && x.status == DF_CACHE_X_NEAREST);
  CHECK(x.n_differ == 1 && x.differ[0] == DF_CACHE_KEY_toolchain);
  CHECK(strcmp(x.nearest.toolchain, k.toolchain) == 0);
  df_cache_explain_free(&x);
  /* prefer the same ir_hash: a decoy matching 7 fields of another kernel
  ** loses to this kernel matching fewer */
  df_cache_key decoy = base_key();
  decoy.ir_hash = "1111111111111111";
  decoy.tuning = "bm=64";
  CHECK(put_str(c, &decoy, "decoy") == DF_CACHE_STORED);
  df_cache_key want = base_key();
  want.tuning = "bm=64";
  want.options = "-O0";
  want.toolchain = "nvrtc 12.0";
  CHECK(df_cache_explain_key(c, &want, &x, &e) == 0 && x.status == DF_CACHE_X_NEAREST);
  CHECK(strcmp(x.nearest.ir_hash, k.ir_hash) == 0 && x.n_differ == 3);
  CHECK(x.differ[0] == DF_CACHE_KEY_toolchain && x.differ[1] == DF_CACHE_KEY_options &&
        x.differ[2] == DF_CACHE_KEY_tuning);
  CHECK(x.entries == 2);
  df_cache_explain_free(&x);
  df_cache_close(c);
}

static void test_bad_keys(void) {
  df_cache *c = open_q(":memory:");
  CHECK(c && df_cache_mode(c) == DF_CACHE_MODE_MEMORY);
  if (!c) return;
  df_cache_key k = base_key();
  df_err e = {0};
  df_cache_entry ent;
  k.ir_hash = "0123456789ABCDEF";
  CHECK(df_cache_get(c, &k, &ent, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "ir_hash '0123456789ABCDEF' is not 16 or 32 lowercase hex digits");
  df_err_clear(&e);
  k.ir_hash = "abc";
  CHECK(df_cache_put(c, &k, "x", 1, NULL, NULL, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "ir_hash 'abc'");
  df_err_clear(&e);
  k = base_key();
  k.backend = NULL;
  CHECK(df_cache_put(c, &k, "x", 1, NULL, NULL, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "backend is missing");
  df_err_clear(&e);
  CHECK(df_cache_get(c, NULL, &ent, &e) == DF_EINVAL);
  df_err_clear(&e);
  CHECK(df_cache_key_index("toolchain") == DF_CACHE_KEY_toolchain);
  CHECK(df_cache_key_index("nope") == -1);
  CHECK(strcmp(df_cache_key_name(DF_CACHE_KEY_dferc_version), "dferc_version") == 0);
  df_cache_close(c);
}

/* Flip a bit of byte `at` of every blob in the file, as a bad disk would. */
static void flip_blob_byte(const char *db, int at) {
  sqlite3 *h;
  sqlite3_stmt *st;
  if (sqlite3_open(db, &h) != SQLITE_OK) return;
  if (sqlite3_prepare_v2(h, "SELECT id, data FROM blobs", -1, &st, NULL) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(st, 0);
      int n = sqlite3_column_bytes(st, 1);
      unsigned char *b = malloc(n ? n : 1);
      memcpy(b, sqlite3_column_blob(st, 1), n);
      if (at < n) b[at] ^= 0x01;
      sqlite3_stmt *up;
      sqlite3_prepare_v2(h, "UPDATE blobs SET data = ?1 WHERE id = ?2", -1, &up, NULL);
      sqlite3_bind_blob(up, 1, b, n, SQLITE_TRANSIENT);
      sqlite3_bind_int64(up, 2, id);
      sqlite3_step(up);
      sqlite3_finalize(up);
      free(b);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
}

static void test_damaged_rows(void) {
  const char *db = tpath("%s.db", "damaged");
  df_cache *c = open_q(db);
  CHECK(c);
  if (!c) return;
  df_cache_key k = base_key();
  CHECK(put_str(c, &k, "the good kernel") == DF_CACHE_STORED);
  CHECK(get_is(c, &k, "the good kernel") == 1);
  /* a flipped blob byte: a miss, explain says so, and a put repairs it */
  flip_blob_byte(db, 4);
  CHECK(get_is(c, &k, "the good kernel") == 0);
  df_err e = {0};
  df_cache_explain x;
  CHECK(df_cache_explain_key(c, &k, &x, &e) == 0 && x.status == DF_CACHE_X_INVALID);
  CHECK_CONTAINS(x.reason, "checksum mismatch");
  df_cache_explain_free(&x);
  CHECK(put_str(c, &k, "the good kernel") == DF_CACHE_STORED);
  CHECK(get_is(c, &k, "the good kernel") == 1);
  CHECK(raw_int(db, "SELECT count(*) FROM entries") == 1);
  CHECK(raw_int(db, "SELECT count(*) FROM blobs") == 1);
  /* other damage, each a miss and each repaired by a put */
  const char *damage[] = {
      "UPDATE entries SET config = 'tampered'",
      "UPDATE entries SET times = 'tampered'",
      "UPDATE entries SET size = size + 1",
      "UPDATE entries SET checksum = 'text'",
      "UPDATE entries SET checksum = checksum + 1",
      "DELETE FROM blobs",
      "UPDATE blobs SET data = CAST(data AS TEXT)",
      "UPDATE blobs SET data = substr(data, 1, 3)",
      "UPDATE blobs SET id = id + 1000",
  };
  for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
    CHECK(raw_exec(db, damage[i]) == SQLITE_OK);
    int g = get_is(c, &k, "the good kernel");
    CHECK(g == 0);
    CHECK(put_str(c, &k, "the good kernel") == DF_CACHE_STORED);
    CHECK(get_is(c, &k, "the good kernel") == 1);
    CHECK(raw_int(db, "SELECT count(*) FROM blobs") == 1);
    if (g != 0) printf("# damage %s: get gave %d\n", damage[i], g);
  }
  CHECK(raw_int(db, "PRAGMA integrity_check") == 0); /* "ok" reads as 0 */
  df_cache_close(c);
}

/* Fill a database with a few entries of `size` bytes each, then close. */
static void fill(const char *db, int n, size_t size) {
  df_cache *c = open_q(db);
  if (!c) return;
  for (int i = 0; i < n; i++) {
    df_cache_key k = base_key();
    char h[17];
    snprintf(h, sizeof h, "%016x", i + 1);
    k.ir_hash = h;
    unsigned char *b = make_blob(size, (unsigned)i);
    df_err e = {0};
    df_cache_put(c, &k, b, size, "cfg", "times", &e);
    free(b);
  }
  df_cache_close(c);
}

/* Open a damaged file: one warning line that names it and the aside file,
** the aside file exists, and the new cache works. */
static void check_moved_aside(const char *name, const char *db, const char *why) {
  char out[4096], capfile[600];
  snprintf(capfile, sizeof capfile, "%s.stderr", db);
  capture_begin(capfile);
  df_err e = {0};
  df_cache *c = df_cache_open(db, 0, &e);
  int lines = capture_end(capfile, out, sizeof out);
  CHECK(c);
  if (!c) return;
  CHECK(lines == 1);
  CHECK_CONTAINS(out, "dferc: warning: kernel cache ");
  CHECK_CONTAINS(out, db);
  CHECK_CONTAINS(out, why);
  CHECK(df_cache_warnings(c, NULL) == 1);
  CHECK(df_cache_mode(c) == DF_CACHE_MODE_FILE);
  char dir[600], prefix[300];
  snprintf(dir, sizeof dir, "%s", db);
  *strrchr(dir, '/') = '\0';
  snprintf(prefix, sizeof prefix, "%s.%s-", strrchr(db, '/') + 1, why);
  CHECK(count_files(dir, prefix) >= 1);
  df_cache_key k = base_key();
  CHECK(get_is(c, &k, "fresh") == 0);
  CHECK(put_str(c, &k, "fresh") == DF_CACHE_STORED);
  CHECK(get_is(c, &k, "fresh") == 1);
  df_cache_close(c);
  /* reopening the rebuilt file is quiet */
  capture_begin(capfile);
  c = df_cache_open(db, 0, &e);
  lines = capture_end(capfile, out, sizeof out);
  CHECK(c && lines == 0 && df_cache_warnings(c, NULL) == 0);
  CHECK(c && get_is(c, &k, "fresh") == 1);
  df_cache_close(c);
  if (check_group_failed) printf("# %s: stderr: %s\n", name, out);
}

static void truncate_to(const char *db, long size) {
  if (truncate(db, size) != 0) printf("# truncate %s: %s\n", db, strerror(errno));
}

static void test_truncated_half(void) {
  mkdir_p(tpath("%s", "trunc_half"));
  const char *db = tpath("%s/kernels.db", "trunc_half");
  fill(db, 20, 20000);
  struct stat st;
  CHECK(stat(db, &st) == 0 && st.st_size > 100000);
  CHECK(!exists(tpath("%s/kernels.db-wal", "trunc_half"))); /* closed cleanly */
  truncate_to(db, st.st_size / 2);
  check_moved_aside("half", db, "corrupt");
}

static void test_truncated_100(void) {
  mkdir_p(tpath("%s", "trunc_100"));
  const char *db = tpath("%s/kernels.db", "trunc_100");
  fill(db, 5, 20000);
  truncate_to(db, 100);
  check_moved_aside("100 bytes", db, "corrupt");
}

static void test_garbage_files(void) {
  const char *variants[] = {"random", "text", "header", "shortheader"};
  for (int v = 0; v < 4; v++) {
    mkdir_p(tpath("garbage_%s", variants[v]));
    const char *db = tpath("garbage_%s/kernels.db", variants[v]);
    unsigned char *b = make_blob(50000, 77 + v);
    size_t n = 50000;
    if (v == 1) {
      const char *t = "this is not a database\n";
      memcpy(b, t, strlen(t));
      n = strlen(t);
    } else if (v == 2) {
      memcpy(b, "SQLite format 3", 16); /* the magic, then noise */
    } else if (v == 3) {
      memcpy(b, "SQLite format 3", 16);
      n = 60;
    }
    write_file(db, b, n);
    free(b);
    check_moved_aside(variants[v], db, "corrupt");
    if (check_group_failed) {
      printf("# variant %s\n", variants[v]);
      break;
    }
  }
}

/* A database damaged while a handle has it open: the next get misses
** (never errors), with one warning, and the handle goes on working. */
static void test_damaged_while_open(void) {
  mkdir_p(tpath("%s", "live"));
  const char *db = tpath("%s/kernels.db", "live");
  fill(db, 30, 30000);
  df_cache *c = open_q(db);
  CHECK(c);
  if (!c) return;
  /* scribble over everything after the first two pages */
  struct stat st;
  stat(db, &st);
  unsigned char *noise = make_blob((size_t)st.st_size, 5);
  int fd = open(db, O_WRONLY);
  CHECK(fd >= 0 && pwrite(fd, noise + 8192, (size_t)st.st_size - 8192, 8192) > 0);
  close(fd);
  free(noise);
  int miss = 0, errors = 0;
  for (int i = 0; i < 30; i++) {
    df_cache_key k = base_key();
    char h[17];
    snprintf(h, sizeof h, "%016x", i + 1);
    k.ir_hash = h;
    df_cache_entry ent;
    df_err e = {0};
    int r = df_cache_get(c, &k, &ent, &e);
    if (r < 0) {
      errors++;
      printf("# get: %s\n", e.msg);
    }
    if (r == 0) miss++;
    df_cache_entry_free(&ent);
  }
  CHECK(errors == 0 && miss == 30);
  CHECK(df_cache_warnings(c, NULL) <= 1);
  df_cache_key k = base_key();
  CHECK(put_str(c, &k, "after") == DF_CACHE_STORED);
  CHECK(get_is(c, &k, "after") == 1);
  df_cache_close(c);
}

static void test_newer_schema(void) {
  mkdir_p(tpath("%s", "newer"));
  const char *db = tpath("%s/kernels.db", "newer");
  df_cache *c = open_q(db);
  df_cache_key k = base_key();
  CHECK(c && put_str(c, &k, "from v1") == DF_CACHE_STORED);
  df_cache_close(c);
  CHECK(raw_exec(db, "PRAGMA user_version = 99") == SQLITE_OK);
  check_moved_aside("newer", db, "newer");
  /* the new file did not inherit the row (check_moved_aside stored "fresh"
  ** under the same key, and it reads back "fresh", not "from v1") */
  c = open_q(db);
  CHECK(c && get_is(c, &k, "fresh") == 1);
  df_cache_close(c);
  CHECK(count_files(tpath("%s", "newer"), "kernels.db.newer-") == 1);
}

static void test_foreign_database(void) {
  mkdir_p(tpath("%s", "foreign"));
  const char *db = tpath("%s/kernels.db", "foreign");
  CHECK(raw_exec(db, "CREATE TABLE notes(t TEXT); INSERT INTO notes VALUES ('mine')") == SQLITE_OK);
  check_moved_aside("foreign", db, "unknown");
  /* the other program's data is kept, under the new name */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%s", tpath("%s", "foreign"));
  CHECK(count_files(cmd, "kernels.db.unknown-") == 1);
}

/* An older schema is migrated, not moved aside: the version-0 state is an
** empty database, which migrations[0] turns into the current schema. */
static void test_migrates_empty(void) {
  mkdir_p(tpath("%s", "empty"));
  const char *db = tpath("%s/kernels.db", "empty");
  write_file(db, "", 0);
  df_cache *c = open_q(db);
  CHECK(c && df_cache_warnings(c, NULL) == 0 && df_cache_mode(c) == DF_CACHE_MODE_FILE);
  df_cache_close(c);
  CHECK(raw_int(db, "PRAGMA user_version") == 1);
  CHECK(raw_int(db, "PRAGMA application_id") == 0x64664b43);
  CHECK(count_files(tpath("%s", "empty"), "kernels.db.") == 0);
}

static void check_memory_fallback(const char *db, const char *want) {
  char out[4096], capfile[600];
  snprintf(capfile, sizeof capfile, "%s/fallback.stderr", root);
  capture_begin(capfile);
  df_err e = {0};
  df_cache *c = df_cache_open(db, 0, &e);
  int lines = capture_end(capfile, out, sizeof out);
  CHECK(c);
  if (!c) return;
  CHECK(lines == 1);
  CHECK_CONTAINS(out, db);
  CHECK_CONTAINS(out, want);
  CHECK_CONTAINS(out, "using an in-memory cache");
  CHECK(df_cache_mode(c) == DF_CACHE_MODE_MEMORY);
  df_cache_key k = base_key();
  CHECK(put_str(c, &k, "in memory") == DF_CACHE_STORED);
  CHECK(get_is(c, &k, "in memory") == 1);
  df_cache_stats s;
  CHECK(df_cache_stats_get(c, &s, &e) == 0 && s.entries == 1 && s.file_bytes == 0);
  df_cache_close(c);
  if (check_group_failed) printf("# stderr: %s\n", out);
}

static void test_unwritable_location(void) {
  /* tests run as root, so permissions stop nothing: use a folder that
  ** cannot exist (under a regular file) and a place nothing can be created */
  const char *file = tpath("%s", "a_file.txt");
  write_file(file, "x", 1);
  check_memory_fallback(tpath("%s/kernels.db", "a_file.txt"), "cannot create the folder");
  check_memory_fallback(tpath("%s/deeper/kernels.db", "a_file.txt"), "Not a directory");
  check_memory_fallback("/proc/kernels.db", "unable to open");
  /* the path is a folder */
  mkdir_p(tpath("%s", "a_folder.db"));
  check_memory_fallback(tpath("%s", "a_folder.db"), "using");
}

static void test_disabled(void) {
  df_err e = {0};
  const char *db = tpath("%s.db", "disabled");
  df_cache *c = df_cache_open(db, DF_CACHE_DISABLED, &e);
  CHECK(c && df_cache_mode(c) == DF_CACHE_MODE_DISABLED);
  if (!c) return;
  CHECK(strcmp(df_cache_path(c), db) == 0);
  df_cache_key k = base_key();
  CHECK(put_str(c, &k, "dropped") == DF_CACHE_DROPPED);
  CHECK(get_is(c, &k, "dropped") == 0);
  CHECK(get_is(c, &k, "dropped") == 0);
  df_cache_stats s;
  CHECK(df_cache_stats_get(c, &s, &e) == 0);
  CHECK(s.entries == 0 && s.run_misses == 2 && s.run_hits == 0 && s.run_stores == 0);
  df_cache_explain x;
  CHECK(df_cache_explain_key(c, &k, &x, &e) == 0 && x.status == DF_CACHE_X_DISABLED);
  df_cache_explain_free(&x);
  CHECK(df_cache_clear(c, &e) == 0);
  CHECK(!exists(db)); /* nothing was created */
  df_cache_close(c);
  /* an existing cache is not touched either */
  c = open_q(db);
  CHECK(c && put_str(c, &k, "stored") == DF_CACHE_STORED);
  df_cache_close(c);
  c = df_cache_open(db, DF_CACHE_DISABLED, &e);
  CHECK(c && get_is(c, &k, "stored") == 0);
  df_cache_close(c);
}

static int collect(const df_cache_info *info, void *ud) {
  char *out = ud;
  size_t n = strlen(out);
  snprintf(out + n, 4096 - n, "%s %s %lld %lld|", info->key.ir_hash, info->key.tuning,
           (long long)info->size, (long long)info->hits);
  return 0;
}

static int stop_early(const df_cache_info *info, void *ud) {
  (*(int *)ud)++;
  return 7;
}

static void test_stats_list_clear(void) {
  const char *db = tpath("%s.db", "stats");
  df_cache *c = open_q(db);
  CHECK(c);
  if (!c) return;
  df_cache_key a = base_key(), b = base_key();
  a.ir_hash = "bbbbbbbbbbbbbbbb";
  b.ir_hash = "aaaaaaaaaaaaaaaa";
  CHECK(put_str(c, &a, "12345") == DF_CACHE_STORED);
  CHECK(put_str(c, &b, "1234567890") == DF_CACHE_STORED);
  CHECK(get_is(c, &a, "12345") == 1);
  CHECK(get_is(c, &a, "12345") == 1);
  CHECK(get_is(c, &b, "1234567890") == 1);
  df_cache_key m = base_key();
  m.ir_hash = "cccccccccccccccc";
  CHECK(get_is(c, &m, "") == 0);
  df_err e = {0};
  df_cache_stats s;
  CHECK(df_cache_stats_get(c, &s, &e) == 0);
  CHECK(s.entries == 2 && s.bytes == 15);
  CHECK(s.hits == 3 && s.misses == 1);
  CHECK(s.run_hits == 3 && s.run_misses == 1 && s.run_stores == 2);
  CHECK(s.file_bytes > 0);
  char out[4096] = "";
  CHECK(df_cache_list(c, collect, out, &e) == 0);
  CHECK(strcmp(out, "aaaaaaaaaaaaaaaa bm=128 bn=64 10 1|bbbbbbbbbbbbbbbb bm=128 bn=64 5 2|") == 0);
  int calls = 0;
  CHECK(df_cache_list(c, stop_early, &calls, &e) == 7 && calls == 1);
  df_cache_close(c);
  /* the counters live in the database; this handle's start at zero */
  c = open_q(db);
  CHECK(c && df_cache_stats_get(c, &s, &e) == 0);
  CHECK(s.hits == 3 && s.misses == 1 && s.run_hits == 0 && s.entries == 2);
  CHECK(df_cache_clear(c, &e) == 2);
  CHECK(df_cache_stats_get(c, &s, &e) == 0);
  CHECK(s.entries == 0 && s.bytes == 0 && s.hits == 0 && s.misses == 0);
  CHECK(get_is(c, &a, "12345") == 0);
  df_cache_explain x;
  CHECK(df_cache_explain_key(c, &a, &x, &e) == 0 && x.status == DF_CACHE_X_EMPTY);
  df_cache_explain_free(&x);
  CHECK(df_cache_clear(c, &e) == 0);
  CHECK(e.code == 0);
  df_cache_close(c);
  if (check_group_failed) printf("# list: %s\n", out);
}

static void test_default_paths(void) {
  char *saved[3];
  const char *names[3] = {"DFERC_CACHE", "XDG_CACHE_HOME", "HOME"};
  for (int i = 0; i < 3; i++) {
    const char *v = getenv(names[i]);
    saved[i] = v ? strdup(v) : NULL;
  }
  df_err e = {0};
  unsetenv("DFERC_CACHE");
  setenv("XDG_CACHE_HOME", tpath("%s", "xdg"), 1);
  setenv("HOME", tpath("%s", "home"), 1);
  df_cache *c = open_q(NULL);
  CHECK(c && strcmp(df_cache_path(c), tpath("%s/dferc/kernels.db", "xdg")) == 0);
  CHECK(exists(tpath("%s/dferc/kernels.db", "xdg")));
  df_cache_close(c);
  setenv("XDG_CACHE_HOME", "relative/ignored", 1);
  c = open_q(NULL);
  CHECK(c && strcmp(df_cache_path(c), tpath("%s/.cache/dferc/kernels.db", "home")) == 0);
  CHECK(exists(tpath("%s/.cache/dferc/kernels.db", "home")));
  df_cache_close(c);
  unsetenv("XDG_CACHE_HOME");
  setenv("DFERC_CACHE", tpath("%s", "env.db"), 1);
  c = open_q(NULL);
  CHECK(c && strcmp(df_cache_path(c), tpath("%s", "env.db")) == 0);
  df_cache_close(c);
  c = open_q(tpath("%s", "explicit.db")); /* the argument beats the environment */
  CHECK(c && strcmp(df_cache_path(c), tpath("%s", "explicit.db")) == 0);
  df_cache_close(c);
  unsetenv("DFERC_CACHE");
  unsetenv("HOME");
  c = df_cache_open(NULL, DF_CACHE_QUIET, &e);
  CHECK(c && df_cache_mode(c) == DF_CACHE_MODE_MEMORY && df_cache_warnings(c, NULL) == 1);
  const char *w;
  df_cache_warnings(c, &w);
  CHECK_CONTAINS(w, "HOME");
  df_cache_close(c);
  for (int i = 0; i < 3; i++) {
    if (saved[i]) setenv(names[i], saved[i], 1);
    else unsetenv(names[i]);
    free(saved[i]);
  }
}

/* Random bytes of a good file overwritten, many times over: every get is
** a miss or the key's own blob, and nothing crashes or errors out for
** good (an operation may fail, the next open always works). */
static void test_fuzzed_files(void) {
  mkdir_p(tpath("%s", "fuzz"));
  const char *good = tpath("%s/good.db", "fuzz");
  const char *db = tpath("%s/kernels.db", "fuzz");
  fill(good, 12, 3000);
  FILE *f = fopen(good, "rb");
  CHECK(f);
  if (!f) return;
  static unsigned char orig[1 << 20], bytes[1 << 20];
  size_t n = fread(orig, 1, sizeof orig, f);
  fclose(f);
  uint64_t x = 12345;
  int wrong = 0, hits = 0, opened = 0;
  for (int round = 0; round < 80; round++) {
    memcpy(bytes, orig, n);
    int flips = 1 + round % 8;
    for (int j = 0; j < flips; j++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      /* half the rounds hit the first page (header and schema) */
      size_t at = round % 2 ? (size_t)(x % n) : (size_t)(x % 4096);
      bytes[at] = (unsigned char)(x >> 40);
    }
    char side[600];
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    write_file(db, bytes, n);
    df_err e = {0};
    df_cache *c = df_cache_open(db, DF_CACHE_QUIET, &e);
    if (!c) continue;
    opened++;
    for (int i = 0; i < 12; i++) {
      df_cache_key k = base_key();
      char h[17];
      snprintf(h, sizeof h, "%016x", i + 1);
      k.ir_hash = h;
      df_cache_entry ent;
      df_err ge = {0};
      int r = df_cache_get(c, &k, &ent, &ge);
      if (r == 1) {
        unsigned char *want = make_blob(3000, (unsigned)i);
        if (ent.size != 3000 || memcmp(ent.blob, want, 3000) != 0) wrong++;
        hits++;
        free(want);
        df_cache_entry_free(&ent);
      }
    }
    df_cache_stats s;
    df_cache_stats_get(c, &s, &e);
    df_cache_explain xx;
    df_cache_key any = {.backend = "cuda"};
    if (df_cache_explain_key(c, &any, &xx, &e) == 0) df_cache_explain_free(&xx);
    df_cache_key k = base_key();
    k.ir_hash = "ffffffffffffffff";
    df_err pe = {0};
    df_cache_put(c, &k, "new", 3, NULL, NULL, &pe);
    df_cache_close(c);
  }
  CHECK(wrong == 0);
  CHECK(opened == 80);
  CHECK(hits > 0);
  if (check_group_failed) printf("# %d wrong of %d hits, %d opened\n", wrong, hits, opened);
}

/* Every SQLite call that can fail, failing in turn: a clean error naming
** the database, never a crash, a leak or a half-written row. */
static void test_injected_faults(void) {
  const char *db = tpath("%s.db", "faults");
  df_cache_key k = base_key();
  int errors = 0, stored = 0;
  for (long nth = 1; nth <= 60; nth++) {
    char h[17];
    snprintf(h, sizeof h, "%016lx", (unsigned long)nth);
    k.ir_hash = h;
    df_cache *c = open_q(db);
    if (!c) break;
    df_cache_inject_fault(nth);
    df_err e = {0};
    char blob[64];
    snprintf(blob, sizeof blob, "kernel %ld", nth);
    int r = df_cache_put(c, &k, blob, strlen(blob), "cfg", "t", &e);
    df_cache_entry ent;
    int g = r < 0 ? 0 : df_cache_get(c, &k, &ent, &e);
    df_cache_inject_fault(0);
    if (r < 0 || g < 0) {
      errors++;
      CHECK_CONTAINS(e.msg, db);
      CHECK_CONTAINS(e.msg, "injected fault (cache/cache.c:");
    } else if (r == DF_CACHE_STORED) {
      stored++;
    }
    if (g == 1) df_cache_entry_free(&ent);
    /* afterwards, without faults: either a valid hit or a miss */
    int after = get_is(c, &k, blob);
    CHECK(after == 0 || after == 1);
    if (after == 0) CHECK(put_str(c, &k, blob) == DF_CACHE_STORED);
    df_cache_close(c);
  }
  CHECK(errors > 5 && stored > 0);
  CHECK(raw_int(db, "SELECT count(*) FROM entries") == raw_int(db, "SELECT count(*) FROM blobs"));
  /* a fault while opening still gives a handle (in memory) or NULL */
  for (long nth = 1; nth <= 20; nth++) {
    df_cache_inject_fault(nth);
    df_err e = {0};
    df_cache *c = df_cache_open(tpath("%s.db", "faults_open"), DF_CACHE_QUIET, &e);
    df_cache_inject_fault(0);
    CHECK(c || e.code != 0);
    df_cache_close(c);
  }
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/dferc-test-cache-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  TEST(test_round_trip);
  TEST(test_each_field_misses);
  TEST(test_bad_keys);
  TEST(test_damaged_rows);
  TEST(test_truncated_half);
  TEST(test_truncated_100);
  TEST(test_garbage_files);
  TEST(test_damaged_while_open);
  TEST(test_newer_schema);
  TEST(test_foreign_database);
  TEST(test_migrates_empty);
  TEST(test_unwritable_location);
  TEST(test_disabled);
  TEST(test_probe);
  TEST(test_stats_list_clear);
  TEST(test_default_paths);
  TEST(test_fuzzed_files);
  TEST(test_injected_faults);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (!getenv("DFERC_KEEP_TMP") && system(cmd) != 0) printf("# could not remove %s\n", root);
  return check_exit();
}

/*
** cache_stress.c -- a helper of tests/sh/test_cache.sh: works one kernel
** cache from several processes at once, or dies in the middle of writes.
**
** Every value is a function of its key (the blob's bytes and size come
** from an FNV-1a hash of the key fields), so any process can check any row
** it is served.  Usage:
**
**   cache_stress DB run ID ITERS OUT   ITERS random puts and gets over 48
**       overlapping keys; every hit must be the key's blob.  Then puts and
**       gets every key and writes "key config" lines to OUT: processes
**       agree when their OUT files are equal (the first committed row wins;
**       the config names the process that stored it).
**   cache_stress DB writer             puts new keys with blobs of up to 2 MB;
**       forever; prints "started" after the first (for kill -9)
**   cache_stress DB verify             PRAGMA integrity_check is "ok", and
**       every listed row is served and is its key's blob
**   cache_stress DB lookup TOOLCHAIN   looks up the 48 keys under another
**       toolchain string; prints "hits N"
**
** Exits 0, or 1 with one line on stderr saying what went wrong.
*/
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache.h"

#define NKEYS 48
#define TOOLCHAIN "llvm 14.0.6"

/* The text of key i's fields (tuning varies so keys share an ir_hash). */
typedef struct {
  char hash[17], tuning[32], toolchain[64];
  df_cache_key k;
} skey;

static void make_key(skey *s, int i, const char *toolchain, const char *tuning) {
  uint64_t h = df_cache_fnv1a64(DF_CACHE_FNV_OFFSET, &i, sizeof i);
  if (i % 3 == 0) h = 0xabcdef0123ULL; /* a third of the keys share one kernel */
  snprintf(s->hash, sizeof s->hash, "%016llx", (unsigned long long)h);
  snprintf(s->tuning, sizeof s->tuning, "%s", tuning);
  snprintf(s->toolchain, sizeof s->toolchain, "%s", toolchain);
  s->k = (df_cache_key){.ir_hash = s->hash, .backend = "cpu", .device = "stress-host",
                        .arch = "x86-64+avx2", .toolchain = s->toolchain,
                        .dferc_version = "0.1.0", .options = "-O2", .tuning = s->tuning};
}

static uint64_t key_seed(const df_cache_key *k) {
  uint64_t h = DF_CACHE_FNV_OFFSET;
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    const char *v = df_cache_key_field(k, i);
    h = df_cache_fnv1a64(h, v, strlen(v) + 1);
  }
  return h;
}

/* The blob of a key: size from `maxsize`, bytes from a xorshift stream. */
static unsigned char *key_blob(const df_cache_key *k, size_t maxsize, size_t *size) {
  uint64_t x = key_seed(k) | 1;
  *size = 1 + (size_t)(x % maxsize);
  unsigned char *b = malloc(*size);
  if (!b) {
    fprintf(stderr, "cache_stress: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < *size; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (unsigned char)(x >> 24);
  }
  return b;
}

static void die(const char *what, const df_err *e) {
  fprintf(stderr, "cache_stress[%d]: %s%s%s\n", (int)getpid(), what, e ? ": " : "",
          e ? e->msg : "");
  exit(1);
}

/* Get key k; if it hits, it must be its blob.  Returns 1 hit, 0 miss. */
static int check_get(df_cache *c, const df_cache_key *k, size_t maxsize, char *config,
                     size_t configsz) {
  df_err e = {0};
  df_cache_entry ent;
  int r = df_cache_get(c, k, &ent, &e);
  if (r < 0) die("get", &e);
  if (r == 0) return 0;
  size_t n;
  unsigned char *want = key_blob(k, maxsize, &n);
  if (ent.size != n || memcmp(ent.blob, want, n) != 0) {
    fprintf(stderr, "cache_stress[%d]: key %s %s: served a blob of %zu bytes that is not its own\n",
            (int)getpid(), k->ir_hash, k->tuning, ent.size);
    exit(1);
  }
  if (config) snprintf(config, configsz, "%s", ent.config);
  free(want);
  df_cache_entry_free(&ent);
  return 1;
}

static void put(df_cache *c, const df_cache_key *k, size_t maxsize) {
  size_t n;
  unsigned char *b = key_blob(k, maxsize, &n);
  char config[64];
  snprintf(config, sizeof config, "stored by process %d", (int)getpid());
  df_err e = {0};
  if (df_cache_put(c, k, b, n, config, "[1.0]", &e) < 0) die("put", &e);
  free(b);
}

static int run(df_cache *c, int id, long iters, const char *out) {
  uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
  long hits = 0, misses = 0;
  for (long it = 0; it < iters; it++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    skey s;
    int i = (int)(x % NKEYS);
    char tuning[32];
    snprintf(tuning, sizeof tuning, "bm=%d", 16 << (i % 4));
    make_key(&s, i, TOOLCHAIN, tuning);
    if ((x >> 20) % 2) put(c, &s.k, 100000);
    else if (check_get(c, &s.k, 100000, NULL, 0)) hits++;
    else misses++;
  }
  FILE *f = fopen(out, "w");
  if (!f) die("cannot write the agreement file", NULL);
  for (int i = 0; i < NKEYS; i++) {
    skey s;
    char tuning[32], config[128];
    snprintf(tuning, sizeof tuning, "bm=%d", 16 << (i % 4));
    make_key(&s, i, TOOLCHAIN, tuning);
    put(c, &s.k, 100000);
    if (!check_get(c, &s.k, 100000, config, sizeof config)) die("a key just stored misses", NULL);
    fprintf(f, "%s %s %s\n", s.hash, tuning, config);
  }
  fclose(f);
  printf("process %d: %ld hits, %ld misses\n", id, hits, misses);
  return 0;
}

static int writer(df_cache *c) {
  for (long n = 0;; n++) {
    skey s;
    char tuning[32];
    snprintf(tuning, sizeof tuning, "w=%d-%ld", (int)getpid(), n);
    make_key(&s, (int)(n % NKEYS), TOOLCHAIN, tuning);
    put(c, &s.k, 2 << 20);
    if (n == 0) {
      printf("started\n");
      fflush(stdout);
    }
  }
  return 0;
}

typedef struct {
  skey *keys;
  int n, cap;
} key_list;

static int collect(const df_cache_info *info, void *ud) {
  key_list *l = ud;
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->keys = realloc(l->keys, (size_t)l->cap * sizeof *l->keys);
    if (!l->keys) die("out of memory", NULL);
  }
  skey *s = &l->keys[l->n++];
  snprintf(s->hash, sizeof s->hash, "%s", info->key.ir_hash);
  snprintf(s->tuning, sizeof s->tuning, "%s", info->key.tuning);
  snprintf(s->toolchain, sizeof s->toolchain, "%s", info->key.toolchain);
  return 0;
}

static int verify(df_cache *c, const char *path) {
  sqlite3 *db;
  sqlite3_stmt *st;
  char result[256] = "(none)";
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "cache_stress: %s: %s\n", path, sqlite3_errmsg(db));
    return 1;
  }
  if (sqlite3_step(st) == SQLITE_ROW)
    snprintf(result, sizeof result, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (strcmp(result, "ok") != 0) {
    fprintf(stderr, "cache_stress: %s: integrity_check: %s\n", path, result);
    return 1;
  }
  key_list l = {0};
  df_err e = {0};
  if (df_cache_list(c, collect, &l, &e) < 0) die("list", &e);
  for (int i = 0; i < l.n; i++) {
    skey *s = &l.keys[i];
    s->k = (df_cache_key){.ir_hash = s->hash, .backend = "cpu", .device = "stress-host",
                          .arch = "x86-64+avx2", .toolchain = s->toolchain,
                          .dferc_version = "0.1.0", .options = "-O2", .tuning = s->tuning};
    size_t maxsize = strncmp(s->tuning, "w=", 2) == 0 ? 2 << 20 : 100000;
    if (!check_get(c, &s->k, maxsize, NULL, 0)) {
      fprintf(stderr, "cache_stress: %s: listed row %s %s is not served (torn write?)\n", path,
              s->hash, s->tuning);
      return 1;
    }
  }
  printf("integrity ok, %d rows verified\n", l.n);
  free(l.keys);
  return 0;
}

static int lookup(df_cache *c, const char *toolchain) {
  int hits = 0;
  for (int i = 0; i < NKEYS; i++) {
    skey s;
    char tuning[32];
    snprintf(tuning, sizeof tuning, "bm=%d", 16 << (i % 4));
    make_key(&s, i, toolchain, tuning);
    hits += check_get(c, &s.k, 100000, NULL, 0);
  }
  printf("hits %d\n", hits);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cache_stress DB run ID ITERS OUT | writer | verify | lookup TOOLCHAIN\n");
    return 2;
  }
  df_err e = {0};
  df_cache *c = df_cache_open(argv[1], 0, &e);
  if (!c) die("open", &e);
  if (df_cache_mode(c) != DF_CACHE_MODE_FILE) die("the cache is not a file", NULL);
  int r = 2;
  if (strcmp(argv[2], "run") == 0 && argc == 6) r = run(c, atoi(argv[3]), atol(argv[4]), argv[5]);
  else if (strcmp(argv[2], "writer") == 0) r = writer(c);
  else if (strcmp(argv[2], "verify") == 0) r = verify(c, argv[1]);
  else if (strcmp(argv[2], "lookup") == 0 && argc == 4) r = lookup(c, argv[3]);
  else fprintf(stderr, "cache_stress: bad arguments\n");
  df_cache_close(c);
  return r;
}

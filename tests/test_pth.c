/*
** test_pth.c -- the .pth (torch.save) reader: the MAE-DFER fixture
** checkpoints load bit-identical to their safetensors twins, and
** hand-made archives (zip and pickle built here, in memory) that must each
** load exactly or be refused with a message naming the file and the
** problem -- above all, pickles that try to run code (os.system,
** builtins.eval) are refused and nothing runs.  Files live in a mkdtemp
** directory under /tmp, removed at exit.
**
**   test_pth [--seeds DIR]   also write every hand-made archive into DIR
**                            (a seed corpus for tests/fuzz_pth.c)
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/pth.h"
#include "runtime/safetensors.h"
#include "tests/check.h"

static char tmpdir[64];
static const char *seed_dir;
static char fixtures[1024];

/* ---------------------------------------------------------- byte buffer */

typedef struct {
  unsigned char *p;
  size_t n, cap;
} buf;

static void b_put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void b_op(buf *b, int op) { unsigned char c = (unsigned char)op; b_put(b, &c, 1); }
static void b_le(buf *b, uint64_t x, int n) {
  for (int i = 0; i < n; i++) b_op(b, (int)(x >> (8 * i)) & 0xff);
}
static void b_free(buf *b) { free(b->p); memset(b, 0, sizeof *b); }

/* ------------------------------------------------------- pickle writing */

static void p_str(buf *b, const char *s) { /* BINUNICODE */
  b_op(b, 'X');
  b_le(b, strlen(s), 4);
  b_put(b, s, strlen(s));
}
static void p_int(buf *b, long long v) {
  if (v >= 0 && v < 256) { b_op(b, 'K'); b_le(b, (uint64_t)v, 1); }
  else if (v >= 0 && v < 65536) { b_op(b, 'M'); b_le(b, (uint64_t)v, 2); }
  else if (v >= INT32_MIN && v <= INT32_MAX) { b_op(b, 'J'); b_le(b, (uint64_t)v, 4); }
  else { b_op(b, 0x8a); b_op(b, 8); b_le(b, (uint64_t)v, 8); }
}
static void p_global(buf *b, const char *mod, const char *name) {
  b_op(b, 'c');
  b_put(b, mod, strlen(mod));
  b_op(b, '\n');
  b_put(b, name, strlen(name));
  b_op(b, '\n');
}
static void p_tuple(buf *b, int n, const long long *v) {
  b_op(b, '(');
  for (int i = 0; i < n; i++) p_int(b, v[i]);
  b_op(b, 't');
}
/* _rebuild_tensor_v2(storage `key` of `numel` `stype`, off, size, stride,
** False, OrderedDict()) as torch.save writes it (without memo use). */
static void p_tensor(buf *b, const char *stype, const char *key, long long numel,
                     long long off, int nd, const long long *size,
                     const long long *stride) {
  p_global(b, "torch._utils", "_rebuild_tensor_v2");
  b_op(b, '(');
  b_op(b, '(');
  p_str(b, "storage");
  p_global(b, "torch", stype);
  p_str(b, key);
  p_str(b, "cpu");
  p_int(b, numel);
  b_op(b, 't');
  b_op(b, 'Q');
  p_int(b, off);
  p_tuple(b, nd, size);
  p_tuple(b, nd, stride);
  b_op(b, 0x89);
  p_global(b, "collections", "OrderedDict");
  b_op(b, ')');
  b_op(b, 'R');
  b_op(b, 't');
  b_op(b, 'R');
}
/* {'model': {name: tensor}} around one p_tensor call: the head and tail. */
static void p_head(buf *b) {
  b_op(b, 0x80); b_op(b, 2);
  b_op(b, '}');
  b_op(b, '(');
  p_str(b, "model");
  b_op(b, '}');
  b_op(b, '(');
  p_str(b, "w");
}
static void p_tail(buf *b) {
  b_op(b, 'u');
  b_op(b, 'u');
  b_op(b, '.');
}

/* ---------------------------------------------------------- zip writing */

static uint32_t crc32_ref(const void *d, size_t n) {
  const unsigned char *p = d;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

typedef struct {
  const char *name; /* inside "archive/" */
  const void *data;
  size_t len;
} zent;

/*
** A stored zip of the entries, as "archive/<name>".  zip64: sizes and
** offsets in ZIP64 extra fields (32-bit fields 0xFFFFFFFF) and ZIP64 end
** records, as torch.save writes for files over 4 GiB.
*/
static buf make_zip(const zent *e, int n, int zip64) {
  buf z = {0}, cd = {0};
  for (int i = 0; i < n; i++) {
    char name[256];
    snprintf(name, sizeof name, "archive/%s", e[i].name);
    size_t nl = strlen(name), off = z.n;
    uint32_t crc = crc32_ref(e[i].data, e[i].len);
    b_le(&z, 0x04034b50, 4);
    b_le(&z, 20, 2); b_le(&z, 0, 2); b_le(&z, 0, 2); b_le(&z, 0, 4);
    b_le(&z, crc, 4); b_le(&z, e[i].len, 4); b_le(&z, e[i].len, 4);
    b_le(&z, nl, 2); b_le(&z, 0, 2);
    b_put(&z, name, nl);
    b_put(&z, e[i].data, e[i].len);
    b_le(&cd, 0x02014b50, 4);
    b_le(&cd, 45, 2); b_le(&cd, 45, 2); b_le(&cd, 0, 2); b_le(&cd, 0, 2);
    b_le(&cd, 0, 4); b_le(&cd, crc, 4);
    b_le(&cd, zip64 ? 0xFFFFFFFFu : e[i].len, 4);
    b_le(&cd, zip64 ? 0xFFFFFFFFu : e[i].len, 4);
    b_le(&cd, nl, 2); b_le(&cd, zip64 ? 28 : 0, 2); b_le(&cd, 0, 2);
    b_le(&cd, 0, 2); b_le(&cd, 0, 2); b_le(&cd, 0, 4);
    b_le(&cd, zip64 ? 0xFFFFFFFFu : off, 4);
    b_put(&cd, name, nl);
    if (zip64) {
      b_le(&cd, 1, 2); b_le(&cd, 24, 2);
      b_le(&cd, e[i].len, 8); b_le(&cd, e[i].len, 8); b_le(&cd, off, 8);
    }
  }
  size_t cd_off = z.n;
  b_put(&z, cd.p, cd.n);
  if (zip64) {
    size_t z64 = z.n;
    b_le(&z, 0x06064b50, 4); b_le(&z, 44, 8); b_le(&z, 45, 2); b_le(&z, 45, 2);
    b_le(&z, 0, 4); b_le(&z, 0, 4); b_le(&z, n, 8); b_le(&z, n, 8);
    b_le(&z, cd.n, 8); b_le(&z, cd_off, 8);
    b_le(&z, 0x07064b50, 4); b_le(&z, 0, 4); b_le(&z, z64, 8); b_le(&z, 1, 4);
  }
  b_le(&z, 0x06054b50, 4);
  b_le(&z, 0, 2); b_le(&z, 0, 2);
  b_le(&z, zip64 ? 0xFFFF : n, 2); b_le(&z, zip64 ? 0xFFFF : n, 2);
  b_le(&z, zip64 ? 0xFFFFFFFFu : cd.n, 4);
  b_le(&z, zip64 ? 0xFFFFFFFFu : cd_off, 4);
  b_le(&z, 0, 2);
  b_free(&cd);
  return z;
}

/* A checkpoint of one pickle and up to two storages "0" and "1". */
static buf make_ckpt(const buf *pkl, const void *s0, size_t l0, const void *s1,
                     size_t l1, int zip64) {
  zent e[4] = {{"data.pkl", pkl->p, pkl->n}, {"version", "3\n", 2}};
  int n = 2;
  if (s0) e[n++] = (zent){"data/0", s0, l0};
  if (s1) e[n++] = (zent){"data/1", s1, l1};
  return make_zip(e, n, zip64);
}

/* ------------------------------------------------------------- helpers */

static const char *tpath(const char *name) {
  static char bufs[4][256];
  static int k;
  char *b = bufs[k++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
  return b;
}

static int write_bytes(const char *path, const void *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  size_t w = n ? fwrite(p, 1, n, fp) : 0;
  return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

/* Write `z` as tmpdir/name (and into the seed corpus); returns the path. */
static const char *save(const char *name, const buf *z) {
  const char *path = tpath(name);
  CHECK(write_bytes(path, z->p, z->n) == 0);
  if (seed_dir) {
    char sp[1024];
    snprintf(sp, sizeof sp, "%s/%s", seed_dir, name);
    write_bytes(sp, z->p, z->n);
  }
  return path;
}

/* Opening must fail with a message that starts with the path and contains
** `what` (kept in last_msg; TEST_PTH_VERBOSE=1 prints it). */
static char last_msg[DF_ERR_MSG_MAX];

static void expect_fail_path(const char *path, const char *what) {
  df_err err;
  df_err_clear(&err);
  df_pth_file *f = df_pth_open(path, &err);
  CHECK(f == NULL);
  df_pth_close(f);
  CHECK(err.code != 0);
  CHECK(strncmp(err.msg, path, strlen(path)) == 0);
  CHECK_CONTAINS(err.msg, what);
  memcpy(last_msg, err.msg, sizeof last_msg);
  if (getenv("TEST_PTH_VERBOSE")) printf("# %s\n", err.msg);
}

static void expect_fail(const char *name, const buf *z, const char *what) {
  expect_fail_path(save(name, z), what);
}

/* A one-tensor checkpoint {'model': {'w': tensor}} over storage "0" of
** `numel` F32 elements in an entry of `bytes` bytes. */
static buf one_tensor(long long numel, size_t bytes, long long off, int nd,
                      const long long *size, const long long *stride) {
  buf p = {0};
  p_head(&p);
  p_tensor(&p, "FloatStorage", "0", numel, off, nd, size, stride);
  p_tail(&p);
  float *data = calloc(bytes / 4 + 1, 4);
  for (size_t i = 0; i < bytes / 4; i++) data[i] = (float)i;
  buf z = make_ckpt(&p, data, bytes, NULL, 0, 0);
  free(data);
  b_free(&p);
  return z;
}

/* ---------------------------------------------------------------- tests */

/* Every state-dict tensor equals its safetensors twin, byte for byte. */
static void check_fixture(const char *base) {
  char pth[1200], st[1200];
  snprintf(pth, sizeof pth, "%s/%s.ckpt.pth", fixtures, base);
  snprintf(st, sizeof st, "%s/%s.weights.safetensors", fixtures, base);
  df_err err;
  df_err_clear(&err);
  df_pth_file *f = df_pth_open(pth, &err);
  if (!f) printf("# %s\n", err.msg);
  CHECK(f != NULL);
  df_st_file *s = df_st_open(st, &err);
  CHECK(s != NULL);
  if (!f || !s) {
    df_pth_close(f);
    df_st_close(s);
    return;
  }
  const char *which = NULL;
  int n = df_pth_state_dict(f, &which, &err);
  CHECK(n > 0);
  CHECK(which && strcmp(which, "model") == 0);
  CHECK(n == df_st_count(s));
  for (int i = 0; i < n; i++) {
    const char *name = df_pth_sd_name(f, i);
    df_tensor *t = df_pth_sd_tensor(f, i);
    int j = df_st_find(s, name);
    CHECK(j >= 0);
    if (j < 0 || !t) continue;
    size_t nb;
    const void *d = df_st_data(s, j, &nb);
    CHECK(t->dtype == df_st_dtype(s, j));
    CHECK(t->ndim == df_st_ndim(s, j));
    CHECK(memcmp(t->shape, df_st_shape(s, j), (size_t)t->ndim * sizeof(int64_t)) == 0);
    CHECK(t->nbytes == nb);
    CHECK(nb == t->nbytes && memcmp(t->data, d, nb) == 0);
  }
  const df_pth_value *root = df_pth_root(f);
  CHECK(df_pth_type(root) == DF_PTH_DICT);
  const df_pth_value *ep = df_pth_get(root, "epoch");
  CHECK(df_pth_type(ep) == DF_PTH_INT && df_pth_int(ep) == 49);
  const df_pth_value *args = df_pth_get(root, "args");
  CHECK(df_pth_type(args) == DF_PTH_DICT && df_pth_len(args) > 0);
  for (size_t i = 0; i < df_pth_len(args); i++)
    CHECK(df_pth_type(df_pth_key(args, i)) == DF_PTH_STR);
  /* a tensor outlives the file with a reference */
  df_tensor *keep = df_tensor_ref(df_pth_sd_tensor(f, 0));
  df_pth_close(f);
  CHECK(keep && keep->refs == 1 && keep->nbytes > 0);
  df_tensor_unref(keep);
  df_st_close(s);
}

static void test_fixture_finetune(void) { check_fixture("finetune_tiny"); }
static void test_fixture_pretrain(void) { check_fixture("pretrain_tiny"); }

/* Pickles that would run a command: refused by name, and nothing runs. */
static void test_refuse_code(void) {
  char witness[300], cmd[400];
  snprintf(witness, sizeof witness, "%s", tpath("pwned"));
  snprintf(cmd, sizeof cmd, "touch %s", witness);
  struct { const char *mod, *name, *file; int stack; } cases[] = {
    {"os", "system", "os_system.pth", 0},
    {"posix", "system", "posix_system.pth", 0},
    {"builtins", "eval", "builtins_eval.pth", 0},
    {"__builtin__", "getattr", "builtin_getattr.pth", 0},
    {"os", "system", "stack_global.pth", 1},
    {"builtins", "exec", "stack_exec.pth", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    buf p = {0};
    b_op(&p, 0x80); b_op(&p, cases[i].stack ? 4 : 2);
    if (cases[i].stack) {
      b_op(&p, 0x8c); b_op(&p, (int)strlen(cases[i].mod));
      b_put(&p, cases[i].mod, strlen(cases[i].mod));
      b_op(&p, 0x94);
      b_op(&p, 0x8c); b_op(&p, (int)strlen(cases[i].name));
      b_put(&p, cases[i].name, strlen(cases[i].name));
      b_op(&p, 0x94);
      b_op(&p, 0x93);
    } else {
      p_global(&p, cases[i].mod, cases[i].name);
    }
    p_str(&p, strcmp(cases[i].name, "getattr") ? cmd : "system");
    b_op(&p, 0x85);
    b_op(&p, 'R');
    b_op(&p, '.');
    buf z = make_ckpt(&p, NULL, 0, NULL, 0, 0);
    char want[128];
    snprintf(want, sizeof want, "data.pkl: refusing global '%s.%s' (only tensors",
             cases[i].mod, cases[i].name);
    expect_fail(cases[i].file, &z, want);
    b_free(&z);
    b_free(&p);
  }
  CHECK(access(witness, F_OK) != 0);
}

/* A pickle with several features: protocol 4 framing and MEMOIZE, an
** OrderedDict state dict with _metadata (BUILD dropped), a transposed
** (non-contiguous) tensor, an empty tensor, ints of every width, a
** Namespace, floats, bytes, None, lists, ZIP64 records. */
static void test_handmade(void) {
  for (int zip64 = 0; zip64 < 2; zip64++) {
    buf p = {0};
    b_op(&p, 0x80); b_op(&p, 4);
    b_op(&p, 0x95); b_le(&p, 0, 8);
    b_op(&p, '}'); b_op(&p, 0x94);
    b_op(&p, '(');
    p_str(&p, "module");
    p_global(&p, "collections", "OrderedDict"); b_op(&p, ')'); b_op(&p, 'R');
    b_op(&p, 0x94);
    b_op(&p, '(');
    p_str(&p, "t");  /* [3, 2] view of a [2, 3] storage: stride (1, 3) */
    p_tensor(&p, "FloatStorage", "0", 6, 0, 2, (long long[]){3, 2}, (long long[]){1, 3});
    p_str(&p, "e");  /* empty [0, 4] */
    p_tensor(&p, "FloatStorage", "0", 6, 6, 2, (long long[]){0, 4}, (long long[]){4, 1});
    p_str(&p, "i");  /* an I64 scalar at offset 1 */
    p_tensor(&p, "LongStorage", "1", 2, 1, 0, NULL, NULL);
    b_op(&p, 'u');
    b_op(&p, '}'); p_str(&p, "_metadata"); b_op(&p, '}'); b_op(&p, 's');
    b_op(&p, 'b');
    p_str(&p, "ints");
    b_op(&p, ']'); b_op(&p, '(');
    p_int(&p, 7); p_int(&p, 300); p_int(&p, -5); p_int(&p, 5000000000LL);
    b_op(&p, 0x8a); b_op(&p, 0);              /* LONG1 0 */
    b_op(&p, 0x8a); b_op(&p, 1); b_op(&p, 0xff); /* LONG1 -1 */
    b_op(&p, 'e');
    p_str(&p, "args");
    p_global(&p, "argparse", "Namespace"); b_op(&p, ')'); b_op(&p, 0x81);
    b_op(&p, '}'); b_op(&p, '(');
    p_str(&p, "lr"); b_op(&p, 'G'); b_op(&p, 0x3f); b_op(&p, 0xf8); b_le(&p, 0, 6);
    p_str(&p, "name"); b_op(&p, 'C'); b_op(&p, 2); b_put(&p, "ab", 2);
    p_str(&p, "none"); b_op(&p, 'N');
    p_str(&p, "size");
    p_global(&p, "torch", "Size"); p_tuple(&p, 2, (long long[]){4, 5}); b_op(&p, 0x85);
    b_op(&p, 'R');
    b_op(&p, 'u');
    b_op(&p, 'b');
    b_op(&p, 'u');
    b_op(&p, '.');
    float s0[6] = {0, 1, 2, 3, 4, 5};
    int64_t s1[2] = {11, -22};
    buf z = make_ckpt(&p, s0, sizeof s0, s1, sizeof s1, zip64);
    const char *path = save(zip64 ? "handmade64.pth" : "handmade.pth", &z);
    df_err err;
    df_err_clear(&err);
    df_pth_file *f = df_pth_open(path, &err);
    if (!f) printf("# %s\n", err.msg);
    CHECK(f != NULL);
    const char *which = NULL;
    CHECK(df_pth_state_dict(f, &which, &err) == 3);
    CHECK(which && strcmp(which, "module") == 0);
    CHECK(strcmp(df_pth_sd_name(f, 0), "t") == 0);
    df_tensor *t = df_pth_sd_tensor(f, 0);
    float want[6] = {0, 3, 1, 4, 2, 5};
    CHECK(t && t->dtype == DF_F32 && t->ndim == 2 && t->shape[0] == 3 &&
          t->shape[1] == 2 && memcmp(t->data, want, sizeof want) == 0);
    t = df_pth_sd_tensor(f, 1);
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->nbytes == 0);
    t = df_pth_sd_tensor(f, 2);
    CHECK(t && t->dtype == DF_I64 && t->ndim == 0 && ((int64_t *)t->data)[0] == -22);
    const df_pth_value *root = df_pth_root(f), *ints = df_pth_get(root, "ints");
    long long wi[] = {7, 300, -5, 5000000000LL, 0, -1};
    CHECK(df_pth_type(ints) == DF_PTH_LIST && df_pth_len(ints) == 6);
    for (size_t i = 0; i < 6; i++) CHECK(df_pth_int(df_pth_item(ints, i)) == wi[i]);
    const df_pth_value *args = df_pth_get(root, "args");
    CHECK(df_pth_type(args) == DF_PTH_DICT && df_pth_len(args) == 4);
    CHECK(df_pth_float(df_pth_get(args, "lr")) == 1.5);
    CHECK(df_pth_type(df_pth_get(args, "name")) == DF_PTH_BYTES &&
          strcmp(df_pth_str(df_pth_get(args, "name")), "ab") == 0);
    CHECK(df_pth_get(args, "none") && df_pth_type(df_pth_get(args, "none")) == DF_PTH_NONE);
    const df_pth_value *sz = df_pth_get(args, "size");
    CHECK(df_pth_type(sz) == DF_PTH_TUPLE && df_pth_int(df_pth_item(sz, 1)) == 5);
    CHECK(df_pth_get(args, "missing") == NULL && df_pth_item(sz, 2) == NULL);
    df_pth_close(f);
    b_free(&z);
    b_free(&p);
  }
}

/* Strided views gather into contiguous tensors: one element per stride. */
static void test_views(void) {
  struct {
    long long off;
    int nd;
    long long size[3], stride[3];
  } v[] = {
    {2, 2, {2, 3}, {0, 1}},        /* broadcast rows */
    {1, 2, {3, 2}, {4, 2}},        /* inner stride 2 */
    {0, 3, {2, 3, 4}, {1, 8, 2}},  /* a permutation of a [4, 3, 2] block */
    {5, 1, {1}, {100}},            /* size-1 dims ignore their stride */
    {23, 0, {0}, {0}},             /* a scalar */
  };
  for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
    buf z = one_tensor(24, 96, v[k].off, v[k].nd, v[k].size, v[k].stride);
    char name[32];
    snprintf(name, sizeof name, "view%zu.pth", k);
    df_err err;
    df_err_clear(&err);
    df_pth_file *f = df_pth_open(save(name, &z), &err);
    if (!f) printf("# %s\n", err.msg);
    CHECK(f != NULL);
    df_tensor *t = df_pth_sd_tensor(f, 0);
    CHECK(t && t->ndim == v[k].nd);
    if (t && t->ndim == v[k].nd) {
      long long idx[3] = {0, 0, 0}, n = df_tensor_numel(t);
      for (long long e = 0; e < n; e++) {
        long long at = v[k].off;
        for (int d = 0; d < v[k].nd; d++) at += idx[d] * v[k].stride[d];
        CHECK(((float *)t->data)[e] == (float)at);
        for (int d = v[k].nd - 1; d >= 0; d--) {
          if (++idx[d] < v[k].size[d]) break;
          idx[d] = 0;
        }
      }
    }
    df_pth_close(f);
    b_free(&z);
  }
}

/* The fixture cut short at several points: every cut is a clean error. */
static void test_truncated(void) {
  char pth[1200];
  snprintf(pth, sizeof pth, "%s/finetune_tiny.ckpt.pth", fixtures);
  FILE *fp = fopen(pth, "rb");
  CHECK(fp != NULL);
  if (!fp) return;
  buf all = {0};
  unsigned char chunk[65536];
  size_t r;
  while ((r = fread(chunk, 1, sizeof chunk, fp)) > 0) b_put(&all, chunk, r);
  fclose(fp);
  size_t cuts[] = {0, 1, 21, 22, 100, 5000, all.n / 2, all.n - 200, all.n - 100,
                   all.n - 60, all.n - 23, all.n - 22, all.n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    buf c = {0};
    b_put(&c, all.p, cuts[i]);
    char name[64];
    snprintf(name, sizeof name, "cut%zu.pth", cuts[i]);
    expect_fail(name, &c, cuts[i] == 0 ? "empty file" : ": ");
    b_free(&c);
  }
  /* a flipped byte in a storage: the CRC catches it */
  buf c = {0};
  /* a hole in the middle: the directory points past the shortened file */
  b_put(&c, all.p, all.n / 2);
  b_put(&c, all.p + all.n - 20000, 20000);
  expect_fail("hole.pth", &c, "truncated?)");
  b_free(&c);
  b_put(&c, all.p, all.n);
  c.p[9000] ^= 1;
  expect_fail("flipped.pth", &c, "CRC-32");
  b_free(&c);
  b_free(&all);
}

/* Views outside their storage, storages shorter than their numel. */
static void test_bad_tensors(void) {
  long long s1[] = {6}, s23[] = {2, 3}, st1[] = {1}, st31[] = {3, 1}, st41[] = {4, 1};
  buf z;
  z = one_tensor(10, 16, 0, 1, s1, st1); /* numel 10 F32, only 16 bytes */
  expect_fail("short_storage.pth", &z, "storage '0' holds 10 float32 elements (40 bytes) "
              "but its entry has only 16 bytes");
  b_free(&z);
  z = one_tensor(6, 24, 1, 1, s1, st1); /* offset 1 + 6 elements > 6 */
  expect_fail("bad_offset.pth", &z, "reaches past the storage's 6 elements");
  b_free(&z);
  z = one_tensor(6, 24, 7, 1, (long long[]){0}, st1); /* empty, offset past the end */
  expect_fail("bad_offset_empty.pth", &z, "reaches past");
  b_free(&z);
  z = one_tensor(6, 24, 0, 1, (long long[]){7}, st1);
  expect_fail("bad_size.pth", &z, "size [7]");
  b_free(&z);
  z = one_tensor(6, 24, 0, 2, s23, st41);
  expect_fail("bad_stride.pth", &z, "stride [4, 1]) reaches past");
  b_free(&z);
  z = one_tensor(6, 24, 0, 2, s23, (long long[]){-3, 1});
  expect_fail("neg_stride.pth", &z, "negative size or stride");
  b_free(&z);
  z = one_tensor(6, 24, 0, 2, (long long[]){2, -3}, st31);
  expect_fail("neg_size.pth", &z, "negative size or stride");
  b_free(&z);
  z = one_tensor(6, 24, 0, 2, s23, (long long[]){(long long)1 << 62, 1});
  expect_fail("huge_stride.pth", &z, "reaches past");
  b_free(&z);
  z = one_tensor(6, 24, 0, 2, (long long[]){(long long)1 << 40, (long long)1 << 40}, st31);
  expect_fail("huge_size.pth", &z, "too many elements");
  b_free(&z);
  z = one_tensor((long long)1 << 61, 24, 0, 1, s1, st1);
  expect_fail("huge_numel.pth", &z, "but its entry has only 24 bytes");
  b_free(&z);

  /* a broadcast view (stride 0) of 128 MiB over a 4-byte storage */
  z = one_tensor(1, 4, 0, 1, (long long[]){(long long)1 << 25}, (long long[]){0});
  expect_fail("expand.pth", &z, "tensors would take more than");
  b_free(&z);

  /* a storage type without a df_dtype; a storage entry that is missing */
  buf p = {0};
  p_head(&p);
  p_tensor(&p, "ShortStorage", "0", 6, 0, 1, s1, st1);
  p_tail(&p);
  z = make_ckpt(&p, "012345678901", 12, NULL, 0, 0);
  expect_fail("short_type.pth", &z, "storage type 'torch.ShortStorage' (int16) is not "
              "supported");
  b_free(&z);
  b_free(&p);
  p_head(&p);
  p_tensor(&p, "FloatStorage", "7", 6, 0, 1, s1, st1);
  p_tail(&p);
  z = make_ckpt(&p, NULL, 0, NULL, 0, 0);
  expect_fail("missing_storage.pth", &z, "storage '7': no entry data/7");
  b_free(&z);
  b_free(&p);
}

/* A checkpoint around a raw pickle, expected to fail with `what`. */
static void pickle_fail(const char *name, const buf *p, const char *what) {
  buf z = make_ckpt(p, NULL, 0, NULL, 0, 0);
  expect_fail(name, &z, what);
  b_free(&z);
}

static void test_bad_pickles(void) {
  buf p = {0};
  b_op(&p, 0x80); b_op(&p, 2); b_op(&p, 0xff); b_op(&p, '.');
  pickle_fail("unknown_op.pth", &p, "data.pkl: offset 2: unknown pickle opcode 0xff");
  b_free(&p);

  b_op(&p, 0x80); b_op(&p, 2); p_str(&p, "os"); p_str(&p, "x"); b_op(&p, 'i');
  pickle_fail("inst_op.pth", &p, "pickle opcode INST (0x69) is not supported");
  b_free(&p);

  for (int i = 0; i < 10000; i++) b_op(&p, '(');
  b_op(&p, '.');
  pickle_fail("deep_marks.pth", &p, "more than 256 nested MARKs");
  b_free(&p);

  for (int i = 0; i < 10000; i++) b_op(&p, ']');
  for (int i = 0; i < 9999; i++) b_op(&p, 'a');
  b_op(&p, '.');
  pickle_fail("deep_lists.pth", &p, "nested more than 256 deep");
  b_free(&p);

  /* L = []; L.append(L) */
  b_op(&p, ']'); b_op(&p, 'q'); b_op(&p, 0); b_op(&p, 'h'); b_op(&p, 0);
  b_op(&p, 'a'); b_op(&p, '.');
  pickle_fail("cycle.pth", &p, "cycle");
  b_free(&p);

  b_op(&p, 0x80); b_op(&p, 2); b_op(&p, 'h'); b_op(&p, 5); b_op(&p, '.');
  pickle_fail("memo_unset.pth", &p, "memo get of unset index 5");
  b_free(&p);

  b_op(&p, 'j'); b_le(&p, 0xFFFFFFF0u, 4); b_op(&p, '.');
  pickle_fail("memo_huge.pth", &p, "memo get of unset index 4294967280");
  b_free(&p);

  b_op(&p, ']'); b_op(&p, 'r'); b_le(&p, 0xFFFFFFF0u, 4); b_op(&p, '.');
  pickle_fail("memo_put_huge.pth", &p, "memo index 4294967280 is out of range");
  b_free(&p);

  b_op(&p, 0x80); b_op(&p, 2); b_op(&p, '}');
  pickle_fail("no_stop.pth", &p, "ends without a STOP");
  b_free(&p);

  b_op(&p, 'a'); b_op(&p, '.');
  pickle_fail("underflow.pth", &p, "stack underflow");
  b_free(&p);

  b_op(&p, ']'); b_op(&p, '('); b_op(&p, 'a'); b_op(&p, '.');
  pickle_fail("underflow_mark.pth", &p, "stack underflow");
  b_free(&p);

  b_op(&p, 'X'); b_le(&p, 1000, 4); b_put(&p, "abc", 3);
  pickle_fail("long_string.pth", &p, "string of 1000 bytes runs past the end");
  b_free(&p);

  b_op(&p, 'X'); b_le(&p, 2, 4); b_op(&p, 0xc3); b_op(&p, 0x28); b_op(&p, '.');
  pickle_fail("bad_utf8.pth", &p, "not valid UTF-8");
  b_free(&p);

  b_op(&p, 0x8a); b_op(&p, 9); b_le(&p, 1, 8); b_op(&p, 0); b_op(&p, '.');
  pickle_fail("long9.pth", &p, "integer of 9 bytes");
  b_free(&p);

  b_op(&p, '}'); b_op(&p, '('); p_str(&p, "a"); b_op(&p, 'N'); p_str(&p, "a");
  b_op(&p, 'N'); b_op(&p, 'u'); b_op(&p, '.');
  pickle_fail("dup_key.pth", &p, "a dict has the key 'a' twice");
  b_free(&p);

  b_op(&p, '}'); b_op(&p, ']'); b_op(&p, 'N'); b_op(&p, 's'); b_op(&p, '.');
  pickle_fail("list_key.pth", &p, "dict key is a list");
  b_free(&p);

  /* a chain of 200 lists, shared (memo) at the end of a chain of 100 */
  b_op(&p, '(');
  for (int i = 0; i < 200; i++) b_op(&p, ']');
  for (int i = 0; i < 199; i++) b_op(&p, 'a');
  b_op(&p, 'q'); b_op(&p, 0);
  for (int i = 0; i < 100; i++) b_op(&p, ']');
  b_op(&p, 'h'); b_op(&p, 0);
  for (int i = 0; i < 100; i++) b_op(&p, 'a');
  b_op(&p, 't'); b_op(&p, '.');
  pickle_fail("deep_shared.pth", &p, "nested more than 256 deep");
  b_free(&p);

  /* x = (); 64 times x = (x, x): 2^64 values when expanded */
  b_op(&p, ')');
  for (int i = 0; i < 64; i++) {
    b_op(&p, 'q'); b_op(&p, 0); b_op(&p, 'h'); b_op(&p, 0); b_op(&p, 0x86);
  }
  b_op(&p, '.');
  pickle_fail("laughs.pth", &p, "billion laughs");
  b_free(&p);

  p_global(&p, "torch", "FloatStorage"); b_op(&p, '.');
  pickle_fail("bare_global.pth", &p, "the global 'torch.FloatStorage' is stored as a value");
  b_free(&p);

  p_global(&p, "torch", "FloatStorage"); b_op(&p, ')'); b_op(&p, 'R'); b_op(&p, '.');
  pickle_fail("call_storage.pth", &p, "'torch.FloatStorage' cannot be called");
  b_free(&p);

  b_op(&p, '}'); b_op(&p, '}'); b_op(&p, 'b'); b_op(&p, '.');
  pickle_fail("build_dict.pth", &p, "BUILD of a dict");
  b_free(&p);

  p_global(&p, "argparse", "Namespace"); b_op(&p, ')'); b_op(&p, 0x81);
  b_op(&p, '}'); b_op(&p, 'b'); b_op(&p, '}'); b_op(&p, 'b'); b_op(&p, '.');
  pickle_fail("build_twice.pth", &p, "BUILD of a dict with a dict state");
  b_free(&p);

  b_op(&p, '('); p_str(&p, "storage"); p_str(&p, "x"); b_op(&p, 't'); b_op(&p, 'Q');
  b_op(&p, '.');
  pickle_fail("bad_persid.pth", &p, "persistent id is not");
  b_free(&p);

  b_op(&p, 0x80); b_op(&p, 6); b_op(&p, '.');
  pickle_fail("proto6.pth", &p, "protocol 6");
  b_free(&p);

  /* a state dict that holds something else than tensors: open works, the
  ** state dict does not */
  p_head(&p);
  p_int(&p, 3);
  p_tail(&p);
  buf z = make_ckpt(&p, NULL, 0, NULL, 0, 0);
  const char *path = save("sd_int.pth", &z);
  df_err err;
  df_err_clear(&err);
  df_pth_file *f = df_pth_open(path, &err);
  CHECK(f != NULL);
  CHECK(df_pth_state_dict(f, NULL, &err) < 0);
  CHECK(strncmp(err.msg, path, strlen(path)) == 0);
  CHECK_CONTAINS(err.msg, "root['model']['w'] is an int, expected a tensor");
  df_pth_close(f);
  b_free(&z);
  b_free(&p);
}

/* Broken zip structure. */
static void test_bad_zip(void) {
  long long s1[] = {6}, st1[] = {1};
  buf z = one_tensor(6, 24, 0, 1, s1, st1);
  /* sanity: the unbroken archive loads */
  const char *ok = save("good.pth", &z);
  df_err err;
  df_err_clear(&err);
  df_pth_file *f = df_pth_open(ok, &err);
  CHECK(f != NULL && df_pth_state_dict(f, NULL, &err) == 1);
  df_pth_close(f);

  size_t eocd = z.n - 22;
  buf c = {0};
  b_put(&c, z.p, z.n);
  c.p[eocd + 16] = 0xF0; c.p[eocd + 17] = 0xFF; c.p[eocd + 18] = 0xFF; c.p[eocd + 19] = 0x7F;
  expect_fail("cd_outside.pth", &c, "the central directory [2147483632, +");
  CHECK_CONTAINS(last_msg, "lies outside the file");
  b_free(&c);

  /* central directory entry pointing its local header past the data */
  b_put(&c, z.p, z.n);
  uint32_t cd_off = (uint32_t)(c.p[eocd + 16] | c.p[eocd + 17] << 8 |
                               c.p[eocd + 18] << 16 | (uint32_t)c.p[eocd + 19] << 24);
  c.p[cd_off + 42] = 0xFF; c.p[cd_off + 43] = 0xFF; c.p[cd_off + 44] = 0xFF;
  c.p[cd_off + 45] = 0x0F;
  expect_fail("local_outside.pth", &c, "local header at offset");
  b_free(&c);

  /* compressed entry (method 8 in both headers) */
  b_put(&c, z.p, z.n);
  c.p[cd_off + 10] = 8;
  c.p[8] = 8;
  expect_fail("deflate.pth", &c, "is compressed (zip method 8)");
  b_free(&c);

  /* stored sizes larger than the file */
  b_put(&c, z.p, z.n);
  c.p[cd_off + 20] = 0xFF; c.p[cd_off + 21] = 0xFF; c.p[cd_off + 22] = 0xFF;
  c.p[cd_off + 23] = 0x0F;
  memcpy(c.p + cd_off + 24, c.p + cd_off + 20, 4);
  expect_fail("size_outside.pth", &c, "runs into the central directory");
  b_free(&c);

  /* more entries than the directory can hold */
  b_put(&c, z.p, z.n);
  c.p[eocd + 8] = c.p[eocd + 10] = 0xFF;
  c.p[eocd + 9] = c.p[eocd + 11] = 0x7F;
  expect_fail("too_many.pth", &c, "claims 32767 entries");
  b_free(&c);
  b_free(&z);

  /* no data.pkl; big-endian byteorder; legacy format; random bytes */
  zent e1[] = {{"version", "3\n", 2}};
  z = make_zip(e1, 1, 0);
  expect_fail("no_pkl.pth", &z, "no archive/data.pkl");
  b_free(&z);
  buf p = {0};
  b_op(&p, 'N'); b_op(&p, '.');
  zent e2[] = {{"data.pkl", p.p, p.n}, {"byteorder", "big", 3}};
  z = make_zip(e2, 2, 0);
  expect_fail("big_endian.pth", &z, "big-endian");
  b_free(&z);
  zent e3[] = {{"data.pkl", p.p, p.n}, {"byteorder", "little", 6}};
  z = make_zip(e3, 2, 0);
  f = df_pth_open(save("little.pth", &z), &err);
  CHECK(f && df_pth_type(df_pth_root(f)) == DF_PTH_NONE);
  df_pth_close(f);
  b_free(&z);
  zent e4[] = {{"data.pkl", p.p, p.n}, {"data.pkl", p.p, p.n}};
  z = make_zip(e4, 2, 0);
  expect_fail("dup_entry.pth", &z, "appears twice");
  b_free(&z);
  b_free(&p);
  b_op(&z, 0x80); b_op(&z, 2); b_op(&z, 0x8a); b_op(&z, 10);
  b_put(&z, "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  expect_fail("legacy.pth", &z, "a legacy torch.save file");
  b_free(&z);
  for (int i = 0; i < 4096; i++) b_op(&z, (i * 7919) & 0xff);
  expect_fail("noise.pth", &z, "not a zip archive");
  b_free(&z);
  expect_fail_path(tpath("does_not_exist.pth"), "cannot open");
}

/* ----------------------------------------------------------------- main */

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(dir);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--seeds") == 0) seed_dir = argv[i + 1];
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pth.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  const char *fx = getenv("DFERC_FIXTURES");
#ifdef DFERC_SRCDIR
  if (!fx || !*fx) fx = DFERC_SRCDIR "/../shared/fixtures/mae_dfer";
#endif
  if (!fx || !*fx) fx = "../shared/fixtures/mae_dfer";
  snprintf(fixtures, sizeof fixtures, "%s", fx);
  char probe[1200];
  snprintf(probe, sizeof probe, "%s/finetune_tiny.ckpt.pth", fixtures);
  int have = access(probe, R_OK) == 0;

  if (have) {
    TEST(test_fixture_finetune);
    TEST(test_fixture_pretrain);
  } else {
    printf("skip test_fixture_finetune: %s not found (set DFERC_FIXTURES)\n", probe);
    printf("skip test_fixture_pretrain: %s not found (set DFERC_FIXTURES)\n", probe);
  }
  TEST(test_refuse_code);
  TEST(test_handmade);
  TEST(test_views);
  if (have) TEST(test_truncated);
  else printf("skip test_truncated: %s not found (set DFERC_FIXTURES)\n", probe);
  TEST(test_bad_tensors);
  TEST(test_bad_pickles);
  TEST(test_bad_zip);
  rm_tree(tmpdir);
  return check_exit();
}

/*
** test_safetensors.c -- safetensors round trips, and hand-made malformed
** files that must each be refused with a message naming the file and the
** problem.  Files live in a mkdtemp directory under /tmp, removed at exit.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "tests/check.h"

#define FIXTURE "../shared/fixtures/mae_dfer/pretrain_tiny.weights.safetensors"

static char tmpdir[64];

/* A path inside the temporary directory (static buffer per call slot). */
static const char *tpath(const char *name) {
  static char bufs[4][256];
  static int k;
  char *b = bufs[k++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
  return b;
}

/* Write raw bytes to a file; 0 on success. */
static int write_bytes(const char *path, const void *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  size_t w = n ? fwrite(p, 1, n, fp) : 0;
  return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

/*
** A safetensors file by hand: header length `hlen` (usually strlen(json)),
** the JSON text, then `dlen` bytes of data (a counting pattern).
*/
static void craft(const char *path, uint64_t hlen, const char *json, size_t dlen) {
  size_t jl = strlen(json);
  unsigned char *buf = calloc(8 + jl + dlen + 1, 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, json, jl);
  for (size_t i = 0; i < dlen; i++) buf[8 + jl + i] = (unsigned char)i;
  CHECK(write_bytes(path, buf, 8 + jl + dlen) == 0);
  free(buf);
}

static void craft_json(const char *path, const char *json, size_t dlen) {
  craft(path, strlen(json), json, dlen);
}

/* Opening must fail with a message naming the file and containing `what`. */
static void expect_fail(const char *path, const char *what) {
  df_err err;
  df_err_clear(&err);
  df_st_file *f = df_st_open(path, &err);
  CHECK(f == NULL);
  df_st_close(f);
  CHECK(err.code != 0);
  CHECK(strncmp(err.msg, path, strlen(path)) == 0);
  CHECK_CONTAINS(err.msg, what);
}

/* Number of directory entries other than . and .. */
static int dir_count(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void test_roundtrip(void) {
  float f32[6] = {1.0f, -2.5f, 3.25f, 1e-30f, -0.0f, 65504.0f};
  double f64[4] = {3.141592653589793, -1e300, 0.0, 2.0 / 3.0};
  uint16_t bf16[3] = {0x3f80, 0xc000, 0x7fc0};
  int64_t i64[4] = {INT64_MIN, -1, 0, INT64_MAX};
  uint8_t bl[5] = {1, 0, 0, 1, 1};
  float scalar = 42.5f;
  int64_t s_f32[2] = {2, 3}, s_f64[1] = {4}, s_bf16[1] = {3}, s_i64[2] = {2, 2},
          s_bool[1] = {5}, s_zero[2] = {0, 3};
  df_st_entry e[] = {
      {"layer.weight", DF_F32, 2, s_f32, f32},
      {"f64", DF_F64, 1, s_f64, f64},
      {"bf16", DF_BF16, 1, s_bf16, bf16},
      {"ids \"quoted\" \\ back\ttab\x01", DF_I64, 2, s_i64, i64},
      {"mask", DF_BOOL, 1, s_bool, bl},
      {"scalar", DF_F32, 0, NULL, &scalar},
      {"empty", DF_F32, 2, s_zero, NULL},
  };
  int n = (int)(sizeof e / sizeof e[0]);
  const char *meta[] = {"format", "pt", "note", "a \"b\"\n\\c", NULL};
  const char *path = tpath("rt.safetensors");
  df_err err;
  df_err_clear(&err);
  CHECK(df_st_write(path, e, n, meta, &err) == 0);
  CHECK(err.code == 0);
  CHECK(dir_count(tmpdir) == 1); /* the temporary file is gone */

  /* header padded so the data area is 8-byte aligned */
  FILE *fp = fopen(path, "rb");
  unsigned char lb[8] = {0};
  CHECK(fp && fread(lb, 1, 8, fp) == 8);
  if (fp) fclose(fp);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | lb[i];
  CHECK((8 + hl) % 8 == 0);

  df_st_file *f = df_st_open(path, &err);
  CHECK(f != NULL);
  if (!f) {
    printf("# %s\n", err.msg);
    return;
  }
  CHECK(strcmp(df_st_path(f), path) == 0);
  CHECK(df_st_count(f) == n);
  for (int i = 0; i < n && i < df_st_count(f); i++) {
    CHECK(strcmp(df_st_name(f, i), e[i].name) == 0); /* file order */
    CHECK(df_st_find(f, e[i].name) == i);
    CHECK(df_st_dtype(f, i) == e[i].dtype);
    CHECK(df_st_ndim(f, i) == e[i].ndim);
    for (int d = 0; d < e[i].ndim; d++) CHECK(df_st_shape(f, i)[d] == e[i].shape[d]);
    size_t nb = 99;
    const void *p = df_st_data(f, i, &nb);
    int64_t numel = 1;
    for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d];
    CHECK(nb == (size_t)numel * df_dtype_size(e[i].dtype));
    CHECK(p != NULL);
    if (p && nb) CHECK(memcmp(p, e[i].data, nb) == 0);
  }
  CHECK(strcmp(df_st_metadata(f, "format"), "pt") == 0);
  CHECK(strcmp(df_st_metadata(f, "note"), "a \"b\"\n\\c") == 0);
  CHECK(df_st_metadata(f, "nope") == NULL);
  CHECK(df_st_find(f, "nope") == -1);
  CHECK(df_st_find(f, "__metadata__") == -1);
  CHECK(df_st_name(f, n) == NULL && df_st_name(f, -1) == NULL);
  CHECK(df_st_shape(f, n) == NULL);
  size_t nb = 7;
  CHECK(df_st_data(f, n, &nb) == NULL && nb == 0);
  df_st_close(f);

  /* no tensors, no metadata: "{}" padded */
  const char *p0 = tpath("empty.safetensors");
  CHECK(df_st_write(p0, NULL, 0, NULL, &err) == 0);
  f = df_st_open(p0, &err);
  CHECK(f && df_st_count(f) == 0 && df_st_metadata(f, "format") == NULL);
  df_st_close(f);
  unlink(p0);

  /* a truncated copy of the valid file: cut the last bytes */
  struct stat st;
  CHECK(stat(path, &st) == 0);
  size_t full = (size_t)st.st_size;
  unsigned char *all = malloc(full);
  fp = fopen(path, "rb");
  CHECK(all && fp && fread(all, 1, full, fp) == full);
  if (fp) fclose(fp);
  const char *cut = tpath("cut.safetensors");
  CHECK(write_bytes(cut, all, full - 3) == 0);
  expect_fail(cut, "out of range");
  expect_fail(cut, "tensor 'scalar': data_offsets [99, 103]");
  /* ... and cut inside the header */
  CHECK(write_bytes(cut, all, 8 + (size_t)hl / 2) == 0);
  expect_fail(cut, "truncated: header says");
  free(all);
  unlink(cut);
  unlink(path);
}

static void test_write_errors(void) {
  float x[2] = {1, 2};
  int64_t s[1] = {2}, neg[1] = {-1};
  df_err err;
  const char *path = tpath("bad.safetensors");

  df_st_entry dup[] = {{"a", DF_F32, 1, s, x}, {"b", DF_F32, 1, s, x},
                       {"a", DF_F32, 1, s, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, dup, 3, NULL, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "duplicate tensor name 'a'");

  df_st_entry empty[] = {{"", DF_F32, 1, s, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, empty, 1, NULL, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, "empty name");

  df_st_entry bad_shape[] = {{"w", DF_F32, 1, neg, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, bad_shape, 1, NULL, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, "tensor 'w': invalid shape [-1]");

  df_st_entry bad_dtype[] = {{"w", (df_dtype)99, 1, s, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, bad_dtype, 1, NULL, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, "invalid dtype");

  df_st_entry bad_utf8[] = {{"w\xff", DF_F32, 1, s, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, bad_utf8, 1, NULL, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, "not valid UTF-8");

  const char *odd_meta[] = {"k", NULL};
  df_st_entry ok[] = {{"w", DF_F32, 1, s, x}};
  df_err_clear(&err);
  CHECK(df_st_write(path, ok, 1, odd_meta, &err) == DF_EINVAL);
  CHECK_CONTAINS(err.msg, "metadata key 'k' has no value");
  CHECK(dir_count(tmpdir) == 0); /* nothing written for invalid input */

  /* a directory that does not exist: DF_EIO naming the path */
  char nodir[300];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/w.safetensors", tmpdir);
  df_err_clear(&err);
  CHECK(df_st_write(nodir, ok, 1, NULL, &err) == DF_EIO);
  CHECK_CONTAINS(err.msg, nodir);
  CHECK_CONTAINS(err.msg, "No such file");
  CHECK(dir_count(tmpdir) == 0);
}

static void test_malformed(void) {
  const char *p = tpath("m.safetensors");

  CHECK(write_bytes(p, "\x10\0\0\0\0", 5) == 0);
  expect_fail(p, "too short: 5 bytes");

  craft(p, 4000, "{}", 110); /* 8 + 2 + 110 = 120 bytes */
  expect_fail(p, "truncated: header says 4000 bytes, file has 112");

  craft(p, (uint64_t)1 << 40, "{}", 0);
  expect_fail(p, "exceeds the limit of 100 MiB");

  craft_json(p, "{\"a\": {\"dtype\": \"F32\",", 0);
  expect_fail(p, "header: JSON: offset 22: expected a string key");

  craft_json(p, "", 0);
  expect_fail(p, "JSON: offset 0: expected a value");

  craft_json(p, "[1, 2]", 0);
  expect_fail(p, "header is a JSON array, expected an object");

  craft_json(p, "{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2);
  expect_fail(p, "tensor 'w': unsupported dtype 'F8_E4M3'");

  craft_json(p, "{\"w\": {\"dtype\": \"float32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "unsupported dtype 'float32'");

  craft_json(p, "{\"w\": {\"dtype\": 5, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "dtype is a JSON number");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "tensor 'w': shape dim 1 is -3");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "shape dim 0 is not an integer");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4);
  expect_fail(p, "rank 9");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "too many elements");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [100], \"data_offsets\": [0, 400]}}", 16);
  expect_fail(p, "tensor 'w': data_offsets [0, 400] out of range: the data area has 16 bytes");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [5, 5], \"data_offsets\": [0, 96]}}", 100);
  expect_fail(p, "tensor 'w': data_offsets [0, 96] span 96 bytes but shape [5, 5] F32 needs 100 bytes");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8);
  expect_fail(p, "begin is after end");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 9]}}", 9);
  expect_fail(p, "data_offsets must be an array [begin, end]");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8);
  expect_fail(p, "data_offsets[0] is not a non-negative integer");

  craft_json(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24);
  expect_fail(p, "tensors 'a' [0, 16] and 'b' [8, 24] overlap");

  /* zero-size tensors never overlap, even at the same offset */
  craft_json(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                " \"s\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [16, 17]}}", 17);
  df_err err;
  df_err_clear(&err);
  df_st_file *f = df_st_open(p, &err);
  CHECK(f && df_st_count(f) == 3 && df_st_ndim(f, 2) == 0);
  if (f) {
    size_t nb;
    const unsigned char *d = df_st_data(f, 2, &nb);
    CHECK(nb == 1 && d[0] == 16); /* the counting pattern */
  }
  df_st_close(f);

  craft_json(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8);
  expect_fail(p, "duplicate key 'a'");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8);
  expect_fail(p, "tensor 'w': missing field 'data_offsets'");

  craft_json(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"x\": 1}}", 8);
  expect_fail(p, "tensor 'w': unknown field 'x'");

  craft_json(p, "{\"w\": [1]}", 0);
  expect_fail(p, "tensor 'w': entry is a JSON array");

  craft_json(p, "{\"\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
  expect_fail(p, "empty name");

  craft_json(p, "{\"__metadata__\": {\"format\": 1}}", 0);
  expect_fail(p, "__metadata__ entry 'format' is a JSON number");

  craft_json(p, "{\"__metadata__\": [\"x\"]}", 0);
  expect_fail(p, "__metadata__ is a JSON array");

  /* a very long tensor name is cut in the message */
  char longj[3000];
  char name[2001];
  memset(name, 'n', 2000);
  name[2000] = 0;
  snprintf(longj, sizeof longj, "{\"%s\": {\"dtype\": \"Q\", \"shape\": [], \"data_offsets\": [0, 0]}}", name);
  craft_json(p, longj, 0);
  expect_fail(p, "nnn...': unsupported dtype 'Q'");

  unlink(p);
  expect_fail(p, "cannot open");
  expect_fail(tmpdir, "not a regular file");
}

static void test_fixture(void) {
  df_err err;
  df_err_clear(&err);
  df_st_file *f = df_st_open(FIXTURE, &err);
  CHECK(f != NULL);
  if (!f) {
    printf("# %s\n", err.msg);
    return;
  }
  /* the header has 89 entries: 88 tensors and __metadata__ */
  CHECK(df_st_count(f) == 88);
  CHECK(df_st_metadata(f, "format") && strcmp(df_st_metadata(f, "format"), "pt") == 0);
  int q = df_st_find(f, "encoder.blocks.0.first_attn.q.weight");
  CHECK(q >= 0);
  if (q >= 0) {
    CHECK(df_st_dtype(f, q) == DF_F32);
    CHECK(df_st_ndim(f, q) == 2);
    CHECK(df_st_shape(f, q)[0] == 64 && df_st_shape(f, q)[1] == 64);
    size_t nb;
    CHECK(df_st_data(f, q, &nb) != NULL && nb == 64 * 64 * 4);
  }
  int m = df_st_find(f, "mask_token");
  CHECK(m == 0); /* first in file order */
  if (m >= 0) {
    CHECK(df_st_dtype(f, m) == DF_F32 && df_st_ndim(f, m) == 3);
    const int64_t *s = df_st_shape(f, m);
    CHECK(s[0] == 1 && s[1] == 1 && s[2] == 48);
  }
  df_st_close(f);
}

int main(void) {
  strcpy(tmpdir, "/tmp/dferc_test_st.XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  TEST(test_roundtrip);
  TEST(test_write_errors);
  TEST(test_malformed);
  if (access(FIXTURE, R_OK) == 0) TEST(test_fixture);
  else printf("skip test_fixture: %s not found (run from the source root)\n", FIXTURE);
  rmdir(tmpdir);
  return check_exit();
}

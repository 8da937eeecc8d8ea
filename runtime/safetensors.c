/*
** safetensors.c -- read and write safetensors files (see safetensors.h).
**
** The reader maps the whole file read-only and checks the entire header
** before handing out anything: afterwards every tensor's bytes are known
** to lie inside the mapping, to have exactly the size its dtype and shape
** need, and not to overlap another tensor.  Errors are prefixed with the
** file path and name the tensor, since the user must find the bad entry.
** The writer builds the header in memory, pads it with spaces so the data
** area starts 8-byte aligned, and writes through a temporary file that is
** fsynced and renamed onto the target.
*/
#define _GNU_SOURCE /* O_CLOEXEC in older headers */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/json.h"
#include "runtime/tensor.h"

#define DF_ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB */

typedef struct {
  char *name;
  df_dtype dtype;
  int ndim;
  int64_t shape[DF_MAX_DIMS];
  const unsigned char *data;
  size_t nbytes;
  uint64_t begin, end; /* data_offsets, relative to the data area */
} st_tensor;

struct df_st_file {
  char *path;
  void *map;
  size_t map_len;
  int n;
  st_tensor *t;
  size_t nmeta;
  char **meta_keys, **meta_vals;
};

static const char *json_kind_name(df_json_kind k) {
  switch (k) {
  case DF_JSON_NULL: return "null";
  case DF_JSON_BOOL: return "boolean";
  case DF_JSON_NUM: return "number";
  case DF_JSON_STR: return "string";
  case DF_JSON_ARR: return "array";
  case DF_JSON_OBJ: return "object";
  }
  return "value";
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void df_st_close(df_st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  if (f->t)
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  for (size_t i = 0; i < f->nmeta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_vals[i]);
  }
  free(f->meta_keys);
  free(f->meta_vals);
  free(f->path);
  free(f);
}

/*
** "__metadata__": an object whose values are all strings; copied into the
** handle so the JSON tree can be freed after the open.
*/
static int st_read_metadata(df_st_file *f, const df_json *m, df_err *err) {
  char qb[128];
  if (m->kind != DF_JSON_OBJ)
    return df_err_set(err, DF_EFORMAT,
                      "%s: __metadata__ is a JSON %s, expected an object of strings",
                      f->path, json_kind_name(m->kind));
  if (m->len == 0) return 0;
  f->meta_keys = calloc(m->len, sizeof *f->meta_keys);
  f->meta_vals = calloc(m->len, sizeof *f->meta_vals);
  if (!f->meta_keys || !f->meta_vals)
    return df_err_set(err, DF_ENOMEM, "%s: out of memory reading __metadata__", f->path);
  for (size_t i = 0; i < m->len; i++) {
    const df_json *v = &m->items[i];
    if (v->kind != DF_JSON_STR)
      return df_err_set(err, DF_EFORMAT,
                        "%s: __metadata__ entry '%s' is a JSON %s, expected a string",
                        f->path,
                        df_err_quote(qb, sizeof qb, m->keys[i], strlen(m->keys[i])),
                        json_kind_name(v->kind));
    f->meta_keys[i] = dup_str(m->keys[i]);
    f->meta_vals[i] = dup_str(v->str);
    f->nmeta = i + 1;
    if (!f->meta_keys[i] || !f->meta_vals[i])
      return df_err_set(err, DF_ENOMEM, "%s: out of memory reading __metadata__",
                        f->path);
  }
  return 0;
}

/*
** One tensor entry {"dtype", "shape", "data_offsets"}: check each field
** and fill *t (name excepted).  `data_size` is the size of the data area.
*/
static int st_read_entry(const df_st_file *f, const char *name, const df_json *e,
                         uint64_t data_size, st_tensor *t, df_err *err) {
  char qb[128], qb2[64], sb[160];
  const char *qn = df_err_quote(qb, sizeof qb, name, strlen(name));
  if (e->kind != DF_JSON_OBJ)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': entry is a JSON %s, expected an object with "
                      "dtype, shape and data_offsets",
                      f->path, qn, json_kind_name(e->kind));
  const df_json *dt = NULL, *sh = NULL, *off = NULL;
  for (size_t i = 0; i < e->len; i++) {
    const char *k = e->keys[i];
    if (strcmp(k, "dtype") == 0) dt = &e->items[i];
    else if (strcmp(k, "shape") == 0) sh = &e->items[i];
    else if (strcmp(k, "data_offsets") == 0) off = &e->items[i];
    else
      return df_err_set(err, DF_EFORMAT,
                        "%s: tensor '%s': unknown field '%s' (expected dtype, shape "
                        "and data_offsets)",
                        f->path, qn, df_err_quote(qb2, sizeof qb2, k, strlen(k)));
  }
  const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
  if (missing)
    return df_err_set(err, DF_EFORMAT, "%s: tensor '%s': missing field '%s'", f->path,
                      qn, missing);

  /* dtype: only the exact safetensors spellings df_dtype knows */
  if (dt->kind != DF_JSON_STR)
    return df_err_set(err, DF_EFORMAT, "%s: tensor '%s': dtype is a JSON %s, expected "
                      "a string", f->path, qn, json_kind_name(dt->kind));
  df_dtype dtype;
  if (strlen(dt->str) != dt->len || df_dtype_parse(dt->str, &dtype) != 0 ||
      strcmp(df_dtype_name(dtype), dt->str) != 0)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': unsupported dtype '%s' (supported: F64 F32 "
                      "F16 BF16 I64 I32 U8 BOOL)",
                      f->path, qn, df_err_quote(qb2, sizeof qb2, dt->str, dt->len));
  t->dtype = dtype;

  /* shape: up to DF_MAX_DIMS non-negative integers */
  if (sh->kind != DF_JSON_ARR)
    return df_err_set(err, DF_EFORMAT, "%s: tensor '%s': shape is a JSON %s, expected "
                      "an array of integers", f->path, qn, json_kind_name(sh->kind));
  if (sh->len > DF_MAX_DIMS)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': shape has rank %zu, more than the maximum %d",
                      f->path, qn, sh->len, DF_MAX_DIMS);
  t->ndim = (int)sh->len;
  for (size_t i = 0; i < sh->len; i++) {
    const df_json *d = &sh->items[i];
    if (d->kind != DF_JSON_NUM || !d->is_int)
      return df_err_set(err, DF_EFORMAT,
                        "%s: tensor '%s': shape dim %zu is not an integer", f->path,
                        qn, i);
    if (d->i64 < 0)
      return df_err_set(err, DF_EFORMAT,
                        "%s: tensor '%s': shape dim %zu is %lld, expected a "
                        "non-negative integer", f->path, qn, i, (long long)d->i64);
    t->shape[i] = d->i64;
  }
  df_shape_str(sb, sizeof sb, t->ndim, t->shape);
  int64_t numel = df_shape_numel(t->ndim, t->shape);
  size_t esz = df_dtype_size(dtype);
  if (numel < 0 || (uint64_t)numel > UINT64_MAX / esz)
    return df_err_set(err, DF_EFORMAT, "%s: tensor '%s': shape %s has too many "
                      "elements", f->path, qn, sb);
  uint64_t need = (uint64_t)numel * esz;

  /* data_offsets: [begin, end] inside the data area, exactly `need` bytes */
  if (off->kind != DF_JSON_ARR || off->len != 2)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': data_offsets must be an array [begin, end], "
                      "found a JSON %s%s", f->path, qn, json_kind_name(off->kind),
                      off->kind == DF_JSON_ARR ? " of the wrong length" : "");
  for (int i = 0; i < 2; i++)
    if (off->items[i].kind != DF_JSON_NUM || !off->items[i].is_int ||
        off->items[i].i64 < 0)
      return df_err_set(err, DF_EFORMAT,
                        "%s: tensor '%s': data_offsets[%d] is not a non-negative "
                        "integer", f->path, qn, i);
  uint64_t b = (uint64_t)off->items[0].i64, en = (uint64_t)off->items[1].i64;
  if (b > en)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu]: begin is after end",
                      f->path, qn, (unsigned long long)b, (unsigned long long)en);
  if (en > data_size)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu] out of range: the "
                      "data area has %llu bytes (file truncated?)",
                      f->path, qn, (unsigned long long)b, (unsigned long long)en,
                      (unsigned long long)data_size);
  if (en - b != need)
    return df_err_set(err, DF_EFORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but "
                      "shape %s %s needs %llu bytes",
                      f->path, qn, (unsigned long long)b, (unsigned long long)en,
                      (unsigned long long)(en - b), sb, df_dtype_name(dtype),
                      (unsigned long long)need);
  t->begin = b;
  t->end = en;
  t->nbytes = (size_t)need; /* need <= data_size <= mapping size */
  return 0;
}

static int cmp_range(const void *a, const void *b) {
  const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/*
** No two non-empty byte ranges may overlap.  Sorted by begin, ranges are
** disjoint exactly when each ends at or before the next one begins.
*/
static int st_check_overlap(const df_st_file *f, df_err *err) {
  if (f->n < 2) return 0;
  const st_tensor **r = malloc((size_t)f->n * sizeof *r);
  if (!r) return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  int m = 0;
  for (int i = 0; i < f->n; i++)
    if (f->t[i].nbytes) r[m++] = &f->t[i];
  if (m > 1) qsort(r, (size_t)m, sizeof *r, cmp_range);
  int rc = 0;
  for (int i = 1; i < m; i++) {
    if (r[i]->begin < r[i - 1]->end) {
      char q1[128], q2[128];
      rc = df_err_set(err, DF_EFORMAT,
                      "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                      f->path,
                      df_err_quote(q1, sizeof q1, r[i - 1]->name, strlen(r[i - 1]->name)),
                      (unsigned long long)r[i - 1]->begin,
                      (unsigned long long)r[i - 1]->end,
                      df_err_quote(q2, sizeof q2, r[i]->name, strlen(r[i]->name)),
                      (unsigned long long)r[i]->begin, (unsigned long long)r[i]->end);
      break;
    }
  }
  free(r);
  return rc;
}

/*
** Check the parsed header and build the tensor table.  `hdr_len` is N and
** `data_size` the bytes after the header.
*/
static int st_read_header(df_st_file *f, const df_json *root, uint64_t hdr_len,
                          uint64_t data_size, df_err *err) {
  if (root->kind != DF_JSON_OBJ)
    return df_err_set(err, DF_EFORMAT,
                      "%s: header is a JSON %s, expected an object of tensors",
                      f->path, json_kind_name(root->kind));
  if (root->len > INT_MAX)
    return df_err_set(err, DF_EFORMAT, "%s: header has too many entries", f->path);
  f->t = calloc(root->len ? root->len : 1, sizeof *f->t);
  if (!f->t) return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  const unsigned char *data = (const unsigned char *)f->map + 8 + hdr_len;
  for (size_t i = 0; i < root->len; i++) {
    const char *name = root->keys[i];
    if (strcmp(name, "__metadata__") == 0) {
      if (st_read_metadata(f, &root->items[i], err)) return -1;
      continue;
    }
    if (name[0] == '\0')
      return df_err_set(err, DF_EFORMAT, "%s: tensor with an empty name", f->path);
    st_tensor *t = &f->t[f->n];
    if (st_read_entry(f, name, &root->items[i], data_size, t, err)) return -1;
    t->data = data + t->begin;
    if (!(t->name = dup_str(name)))
      return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
    f->n++;
  }
  return st_check_overlap(f, err);
}

df_st_file *df_st_open(const char *path, df_err *err) {
  if (!path) {
    df_err_set(err, DF_EINVAL, "safetensors: no path given");
    return NULL;
  }
  df_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = dup_str(path))) {
    free(f);
    df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
    return NULL;
  }
  df_json *root = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    df_err_set(err, DF_EIO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    df_err_set(err, DF_EIO, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    df_err_set(err, DF_EIO, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (size < 8) {
    df_err_set(err, DF_EFORMAT,
               "%s: too short: %llu bytes, but a safetensors file starts with an "
               "8-byte header length", path, (unsigned long long)size);
    close(fd);
    goto fail;
  }
  if (size > SIZE_MAX) {
    df_err_set(err, DF_EIO, "%s: too large to map", path);
    close(fd);
    goto fail;
  }
  void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  close(fd);
  if (map == MAP_FAILED) {
    df_err_set(err, DF_EIO, "%s: cannot map: %s", path, strerror(map_errno));
    goto fail;
  }
  f->map = map;
  f->map_len = (size_t)size;

  const unsigned char *b = map;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
  if (n > DF_ST_MAX_HEADER) {
    df_err_set(err, DF_EFORMAT,
               "%s: header length %llu exceeds the limit of 100 MiB (not a "
               "safetensors file?)", path, (unsigned long long)n);
    goto fail;
  }
  if (n > size - 8) {
    df_err_set(err, DF_EFORMAT, "%s: truncated: header says %llu bytes, file has %llu "
               "after the 8-byte length", path, (unsigned long long)n,
               (unsigned long long)(size - 8));
    goto fail;
  }
  df_err local;
  df_err_clear(&local);
  root = df_json_parse((const char *)b + 8, (size_t)n, &local);
  if (!root) {
    df_err_set(err, local.code, "%s: header: %s", path, local.msg);
    goto fail;
  }
  if (st_read_header(f, root, n, size - 8 - n, err)) goto fail;
  df_json_free(root);
  return f;

fail:
  df_json_free(root);
  df_st_close(f);
  return NULL;
}

const char *df_st_path(const df_st_file *f) { return f ? f->path : NULL; }
int df_st_count(const df_st_file *f) { return f ? f->n : 0; }

static int st_valid(const df_st_file *f, int i) { return f && i >= 0 && i < f->n; }

const char *df_st_name(const df_st_file *f, int i) {
  return st_valid(f, i) ? f->t[i].name : NULL;
}

int df_st_find(const df_st_file *f, const char *name) {
  if (!f || !name) return -1;
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->t[i].name, name) == 0) return i;
  return -1;
}

df_dtype df_st_dtype(const df_st_file *f, int i) {
  return st_valid(f, i) ? f->t[i].dtype : DF_DTYPE_COUNT;
}

int df_st_ndim(const df_st_file *f, int i) { return st_valid(f, i) ? f->t[i].ndim : -1; }

const int64_t *df_st_shape(const df_st_file *f, int i) {
  return st_valid(f, i) ? f->t[i].shape : NULL;
}

const void *df_st_data(const df_st_file *f, int i, size_t *nbytes) {
  if (!st_valid(f, i)) {
    if (nbytes) *nbytes = 0;
    return NULL;
  }
  if (nbytes) *nbytes = f->t[i].nbytes;
  return f->t[i].data;
}

int df_st_metadata_count(const df_st_file *f) { return f ? (int)f->nmeta : 0; }

const char *df_st_metadata_key(const df_st_file *f, int i) {
  return f && i >= 0 && (size_t)i < f->nmeta ? f->meta_keys[i] : NULL;
}

const char *df_st_metadata(const df_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (size_t i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
  return NULL;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *s, const char *x, size_t n) {
  if (s->oom) return;
  if (n > SIZE_MAX - s->len - 1) { s->oom = 1; return; }
  if (s->len + n + 1 > s->cap) {
    size_t nc = s->cap ? s->cap : 256;
    while (nc < s->len + n + 1) {
      if (nc > SIZE_MAX / 2) { s->oom = 1; return; }
      nc *= 2;
    }
    char *np = realloc(s->p, nc);
    if (!np) { s->oom = 1; return; }
    s->p = np;
    s->cap = nc;
  }
  memcpy(s->p + s->len, x, n);
  s->len += n;
  s->p[s->len] = '\0';
}

static void sb_puts(sbuf *s, const char *x) { sb_add(s, x, strlen(x)); }

static void sb_printf(sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof tmp) { s->oom = 1; return; }
  sb_add(s, tmp, (size_t)k);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped. */
static void sb_json_str(sbuf *s, const char *x) {
  sb_add(s, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)x; *c; c++) {
    switch (*c) {
    case '"': sb_add(s, "\\\"", 2); break;
    case '\\': sb_add(s, "\\\\", 2); break;
    case '\n': sb_add(s, "\\n", 2); break;
    case '\r': sb_add(s, "\\r", 2); break;
    case '\t': sb_add(s, "\\t", 2); break;
    default:
      if (*c < 0x20) sb_printf(s, "\\u%04x", *c);
      else sb_add(s, (const char *)c, 1);
    }
  }
  sb_add(s, "\"", 1);
}

/*
** Whether s is valid UTF-8 (no overlongs, surrogates or code points past
** U+10FFFF): the reader rejects anything else, so the writer must too.
*/
static int utf8_valid(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  while (*s) {
    unsigned char c = *s;
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80) { s++; continue; }
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 3;
      if (c == 0xe0) lo = 0xa0;
      else if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 4;
      if (c == 0xf0) lo = 0x90;
      else if (c == 0xf4) hi = 0x8f;
    } else return 0;
    if (s[1] < lo || s[1] > hi) return 0; /* also stops at the NUL */
    for (size_t i = 2; i < need; i++)
      if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    s += need;
  }
  return 1;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
** Check the caller's entries and metadata before touching the disk;
** fills sizes[i] with each tensor's byte count.
*/
static int st_check_entries(const char *path, const df_st_entry *entries, int n,
                            const char *const *meta, size_t *sizes, df_err *err) {
  char qb[128], sb[160];
  for (int i = 0; i < n; i++) {
    const df_st_entry *e = &entries[i];
    if (!e->name || !e->name[0])
      return df_err_set(err, DF_EINVAL, "%s: entry %d has an empty name", path, i);
    const char *qn = df_err_quote(qb, sizeof qb, e->name, strlen(e->name));
    if (strcmp(e->name, "__metadata__") == 0)
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': the name is reserved for "
                        "metadata", path, qn);
    if (!utf8_valid(e->name))
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': name is not valid UTF-8",
                        path, qn);
    if ((unsigned)e->dtype >= DF_DTYPE_COUNT)
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': invalid dtype %d", path, qn,
                        (int)e->dtype);
    if (e->ndim < 0 || e->ndim > DF_MAX_DIMS || (e->ndim && !e->shape))
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': invalid rank %d", path, qn,
                        e->ndim);
    int64_t numel = df_shape_numel(e->ndim, e->shape);
    size_t esz = df_dtype_size(e->dtype);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / esz)
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': invalid shape %s", path, qn,
                        df_shape_str(sb, sizeof sb, e->ndim, e->shape));
    sizes[i] = (size_t)numel * esz;
    if (sizes[i] && !e->data)
      return df_err_set(err, DF_EINVAL, "%s: tensor '%s': no data", path, qn);
  }
  /* unique names: sort a copy of the name pointers */
  if (n > 1) {
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) return df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = entries[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_name);
    for (int i = 1; i < n; i++)
      if (strcmp(names[i - 1], names[i]) == 0) {
        df_err_set(err, DF_EINVAL, "%s: duplicate tensor name '%s'", path,
                   df_err_quote(qb, sizeof qb, names[i], strlen(names[i])));
        free(names);
        return DF_EINVAL;
      }
    free(names);
  }
  if (meta) {
    for (size_t i = 0; meta[i]; i += 2) {
      const char *qk = df_err_quote(qb, sizeof qb, meta[i], strlen(meta[i]));
      if (!meta[i + 1])
        return df_err_set(err, DF_EINVAL, "%s: metadata key '%s' has no value", path, qk);
      if (!utf8_valid(meta[i]) || !utf8_valid(meta[i + 1]))
        return df_err_set(err, DF_EINVAL, "%s: metadata '%s': not valid UTF-8", path, qk);
      for (size_t j = 0; j < i; j += 2)
        if (strcmp(meta[j], meta[i]) == 0)
          return df_err_set(err, DF_EINVAL, "%s: duplicate metadata key '%s'", path, qk);
    }
  }
  return 0;
}

/* Write all of buf; 0 or -1 (errno set). */
static int write_all(FILE *fp, const void *buf, size_t n) {
  if (n == 0) return 0;
  if (fwrite(buf, 1, n, fp) != n) {
    if (!errno) errno = EIO;
    return -1;
  }
  return 0;
}


/* Remove the temporary files "PATH.tmp.PID" that earlier saves to path
** left when they were killed: those of processes that no longer exist,
** untouched for a minute (a live writer keeps its file fresh). */
static void remove_stale_temps(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[PATH_MAX];
  const char *base = slash ? slash + 1 : path;
  if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path == 0 ? 1 : slash - path), path);
  else snprintf(dir, sizeof dir, ".");
  size_t bl = strlen(base);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *nm = e->d_name;
    if (strncmp(nm, base, bl) != 0 || strncmp(nm + bl, ".tmp.", 5) != 0) continue;
    const char *digits = nm + bl + 5;
    if (!*digits || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9) continue;
    long pid = atol(digits);
    if (pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    char full[PATH_MAX + 300];
    snprintf(full, sizeof full, "%s/%s", dir, nm);
    struct stat st;
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && time(NULL) - st.st_mtime >= 60) unlink(full);
  }
  closedir(d);
}

int df_st_write(const char *path, const df_st_entry *entries, int n,
                const char *const *meta, df_err *err) {
  if (!path || n < 0 || (n > 0 && !entries))
    return df_err_set(err, DF_EINVAL, "safetensors: bad arguments to df_st_write");
  size_t *sizes = calloc(n ? (size_t)n : 1, sizeof *sizes);
  if (!sizes) return df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
  int rc = st_check_entries(path, entries, n, meta, sizes, err);
  if (rc) { free(sizes); return rc; }

  /* header JSON, data laid out in the given order */
  sbuf h = {NULL, 0, 0, 0};
  sb_puts(&h, "{");
  int first = 1;
  if (meta && meta[0]) {
    sb_puts(&h, "\"__metadata__\":{");
    for (size_t i = 0; meta[i]; i += 2) {
      if (i) sb_puts(&h, ",");
      sb_json_str(&h, meta[i]);
      sb_puts(&h, ":");
      sb_json_str(&h, meta[i + 1]);
    }
    sb_puts(&h, "}");
    first = 0;
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const df_st_entry *e = &entries[i];
    if (!first) sb_puts(&h, ",");
    first = 0;
    sb_json_str(&h, e->name);
    sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", df_dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++)
      sb_printf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
    if (sizes[i] > UINT64_MAX - off) { h.oom = 1; break; }
    sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
              (unsigned long long)(off + sizes[i]));
    off += sizes[i];
  }
  sb_puts(&h, "}");
  while (!h.oom && (8 + h.len) % 8 != 0) sb_puts(&h, " ");
  if (h.oom) {
    free(h.p);
    free(sizes);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory building the header", path);
  }

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp) {
    free(h.p);
    free(sizes);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
  }
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());

  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    rc = df_err_set(err, DF_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    goto out;
  }
  unsigned char lenb[8];
  uint64_t hl = h.len;
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
  errno = 0;
  int bad = write_all(fp, lenb, 8) || write_all(fp, h.p, h.len);
  for (int i = 0; i < n && !bad; i++) bad = write_all(fp, entries[i].data, sizes[i]);
  if (!bad && fflush(fp) != 0) bad = 1;
  if (!bad && fsync(fileno(fp)) != 0) bad = 1;
  int saved = errno;
  if (fclose(fp) != 0 && !bad) { bad = 1; saved = errno; }
  if (!bad && rename(tmp, path) != 0) { bad = 1; saved = errno; }
  if (bad) {
    unlink(tmp);
    rc = df_err_set(err, DF_EIO, "%s: write failed: %s", path,
                    strerror(saved ? saved : EIO));
  } else {
    remove_stale_temps(path);
  }
out:
  free(tmp);
  free(h.p);
  free(sizes);
  return rc;
}

/*
** pth.c -- read torch.save checkpoints without running pickle code (see
** pth.h).
**
** Three stages, each checking its input completely before the next runs:
**   1. zip: the end-of-central-directory record (ZIP64 when present), every
**      central-directory entry and its local header; every entry's data
**      lies inside the file, before the central directory; only stored
**      (uncompressed) entries; entry names unique.
**   2. pickle: an opcode interpreter over data.pkl with a bounded stack,
**      MARK depth and memo.  Globals resolve against a short allow-list to
**      markers; REDUCE / NEWOBJ / BUILD only ever build containers, tuples
**      and tensors from them.  A persistent id names a storage entry, whose
**      size and CRC are checked; _rebuild_tensor_v2 checks the view (offset,
**      sizes, strides) against the storage and copies it into a new
**      contiguous df_tensor.
**   3. tree: one iterative walk from the root refuses cycles, nesting
**      deeper than DF_PTH_MAX_DEPTH, duplicate dict keys and leftovers that
**      are not data (a bare global or storage).
** Values live in one list owned by the handle and are freed together, so
** sharing (memo references) needs no reference counting.
*/
#define _GNU_SOURCE /* O_CLOEXEC in older headers */
#include "runtime/pth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pth.c copies little-endian storage bytes as they are: little-endian hosts only"
#endif

#define MAX_STACK ((size_t)1 << 22) /* pickle stack entries */
#define EXPAND_FACTOR 16            /* tensors may take 16 x the file size ... */
#define EXPAND_SLACK ((uint64_t)64 << 20) /* ... plus 64 MiB */

/* Internal value kinds, after the public ones; never in a finished tree. */
enum { K_GLOBAL = DF_PTH_TENSOR + 1, K_STORAGE };
/* Dict flags: how BUILD treats the object (see op_build). */
enum { V_ODICT = 1, V_OBJECT = 2 };

typedef struct zentry {
  char *name;
  uint64_t off, size; /* the entry's data inside the file */
  uint32_t crc;
  int crc_checked;
  int st_used;        /* referenced as a storage: its type and numel */
  df_dtype st_dtype;
  uint64_t st_numel;
} zentry;

struct df_pth_value {
  unsigned char kind, flags, color;
  int height;               /* tree check: values on the longest path down */
  uint64_t expand;          /* tree check: values below, shared ones per use */
  int64_t i;                /* BOOL, INT; K_GLOBAL: index in `globals` */
  double f;                 /* FLOAT */
  char *s;                  /* STR, BYTES: len bytes + NUL */
  size_t len;               /* STR, BYTES: bytes; TUPLE, LIST, DICT: entries */
  size_t cap;
  df_pth_value **items;     /* TUPLE, LIST: items; DICT: values */
  df_pth_value **keys;      /* DICT */
  df_tensor *tensor;        /* TENSOR */
  zentry *st;               /* K_STORAGE */
};

struct df_pth_file {
  char *path;
  const unsigned char *base; /* the archive bytes, during the open only */
  size_t size;
  zentry *ent;               /* sorted by name */
  size_t nent;
  char *prefix;              /* "<archive>/" */
  uint32_t crc_tab[8][256];
  df_pth_value **vals;       /* every value, for df_pth_close */
  size_t nvals, capvals;
  df_pth_value *root;
  uint64_t tensor_bytes, tensor_cap;
  /* the state dict, found once after parsing */
  df_err sd_err;
  const char *sd_which;
  int sd_n;
  const char **sd_names;
  df_tensor **sd_t;
};

static const char *const kind_names[] = {
  "None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
  "tensor", "global", "storage"
};

const char *df_pth_kind_name(df_pth_kind k) {
  return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

/* "an int", "a dict", "None": for messages. */
static const char *a_kind(int k) {
  static const char *const a[] = {
    "None", "a bool", "an int", "a float", "a str", "a bytes", "a tuple", "a list",
    "a dict", "a tensor", "a global", "a storage"
  };
  return (unsigned)k < sizeof a / sizeof *a ? a[k] : "?";
}

/* ---------------------------------------------------------------- bytes */

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* CRC-32 (zip's polynomial), eight bytes per step ("slicing by 8"), so
** checking multi-GiB checkpoints stays cheap next to copying them. */
static void crc_init(uint32_t t[8][256]) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (int i = 0; i < 256; i++)
    for (int k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
}

static uint32_t crc32_buf(uint32_t t[8][256], const unsigned char *p, uint64_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (; n >= 8; p += 8, n -= 8) {
    uint32_t lo = c ^ rd32(p), hi = rd32(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
        t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
        t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

/* Entry names in messages: without the archive folder, cut, no controls. */
static const char *ename(const df_pth_file *f, char *buf, size_t bufsz, const char *name) {
  size_t pl = f->prefix ? strlen(f->prefix) : 0;
  if (pl && strncmp(name, f->prefix, pl) == 0) name += pl;
  return df_err_quote(buf, bufsz, name, strlen(name));
}

/* Check an entry's CRC once.  Fuzzing builds skip the comparison so that
** mutated inputs reach the unpickler. */
static int zip_check_crc(df_pth_file *f, zentry *e, df_err *err) {
  if (e->crc_checked) return 0;
  uint32_t c = crc32_buf(f->crc_tab, f->base + e->off, e->size);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  if (c != e->crc) {
    char qb[128];
    return df_err_set(err, DF_EFORMAT,
                      "%s: entry '%s': CRC-32 is %08x, the archive says %08x (file "
                      "corrupt?)", f->path, ename(f, qb, sizeof qb, e->name), c, e->crc);
  }
#else
  (void)c;
#endif
  e->crc_checked = 1;
  return 0;
}

/* ------------------------------------------------------------------ zip */

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const zentry *)a)->name, ((const zentry *)b)->name);
}

/* The entry "<archive>/<rel>", or NULL. */
static zentry *zip_find(df_pth_file *f, const char *rel) {
  size_t pl = strlen(f->prefix), rl = strlen(rel);
  char *name = malloc(pl + rl + 1);
  if (!name) return NULL;
  memcpy(name, f->prefix, pl);
  memcpy(name + pl, rel, rl + 1);
  zentry key = {.name = name};
  zentry *e = bsearch(&key, f->ent, f->nent, sizeof *f->ent, cmp_entry);
  free(name);
  return e;
}

/*
** The end of the central directory: the classic record (searched for in
** the last 64 KiB + 22 bytes, since a comment may follow it) and, when its
** locator sits just before it, the ZIP64 record, whose 64-bit fields win.
** Sets the entry count and the central directory's range, which must end
** at or before the end records.
*/
static int zip_find_cd(df_pth_file *f, uint64_t *nent, uint64_t *cd_off,
                       uint64_t *cd_size, df_err *err) {
  const unsigned char *b = f->base;
  size_t size = f->size, eocd = SIZE_MAX;
  if (size >= 22) {
    size_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
    for (size_t i = size - 22 + 1; i-- > lo;)
      if (rd32(b + i) == 0x06054b50 && i + 22 + rd16(b + i + 20) <= size) {
        eocd = i;
        break;
      }
  }
  if (eocd == SIZE_MAX) {
    if (size >= 2 && b[0] == 0x80 && b[1] <= 5)
      return df_err_set(err, DF_EFORMAT,
                        "%s: a legacy torch.save file (PyTorch < 1.6, not a zip "
                        "archive); not supported: load and save it again with a "
                        "newer PyTorch", f->path);
    return df_err_set(err, DF_EFORMAT,
                      "%s: not a zip archive: no end-of-central-directory record in "
                      "its %zu bytes (truncated, or not a torch.save checkpoint?)",
                      f->path, size);
  }
  const unsigned char *e = b + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6), n_disk = rd16(e + 8);
  *nent = rd16(e + 10);
  *cd_size = rd32(e + 12);
  *cd_off = rd32(e + 16);
  size_t limit = eocd; /* the central directory ends before this */
  if (eocd >= 20 && rd32(e - 20) == 0x07064b50) {
    uint64_t z = rd64(e - 12);
    if (rd32(e - 16) != 0 || rd32(e - 4) != 1)
      return df_err_set(err, DF_EFORMAT, "%s: multi-disk zip archives are not "
                        "supported", f->path);
    if (eocd - 20 < 56 || z > eocd - 20 - 56 || rd32(b + z) != 0x06064b50)
      return df_err_set(err, DF_EFORMAT,
                        "%s: the ZIP64 end-of-central-directory record (offset %llu) "
                        "is missing or out of range (file truncated?)",
                        f->path, (unsigned long long)z);
    const unsigned char *r = b + z;
    disk = rd32(r + 16);
    cd_disk = rd32(r + 20);
    n_disk = rd64(r + 24);
    *nent = rd64(r + 32);
    *cd_size = rd64(r + 40);
    *cd_off = rd64(r + 48);
    limit = (size_t)z;
  } else if (*nent == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu) {
    return df_err_set(err, DF_EFORMAT, "%s: the end record asks for ZIP64 values but "
                      "there is no ZIP64 end record", f->path);
  }
  if (disk != 0 || cd_disk != 0 || n_disk != *nent)
    return df_err_set(err, DF_EFORMAT, "%s: multi-disk zip archives are not supported",
                      f->path);
  if (*cd_off > limit || *cd_size > limit - *cd_off)
    return df_err_set(err, DF_EFORMAT,
                      "%s: the central directory [%llu, +%llu) lies outside the file "
                      "(%zu bytes before its end records; truncated?)", f->path,
                      (unsigned long long)*cd_off, (unsigned long long)*cd_size, limit);
  if (*nent == 0)
    return df_err_set(err, DF_EFORMAT, "%s: the zip archive is empty", f->path);
  if (*nent > *cd_size / 46)
    return df_err_set(err, DF_EFORMAT,
                      "%s: the central directory claims %llu entries in %llu bytes",
                      f->path, (unsigned long long)*nent, (unsigned long long)*cd_size);
  return 0;
}

/*
** One central-directory entry at b[*pos] (inside [.., cd_end)): its name,
** sizes and local header; the entry's data must be stored and lie before
** the central directory.  Advances *pos.
*/
static int zip_entry(df_pth_file *f, size_t *pos, size_t cd_off, size_t cd_end,
                     zentry *z, df_err *err) {
  const unsigned char *b = f->base, *c = b + *pos;
  char qb[128];
  if (cd_end - *pos < 46 || rd32(c) != 0x02014b50)
    return df_err_set(err, DF_EFORMAT,
                      "%s: central directory entry at offset %zu is malformed or cut "
                      "short", f->path, *pos);
  unsigned flags = rd16(c + 8), method = rd16(c + 10);
  size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
  uint64_t csize = rd32(c + 20), usize = rd32(c + 24), loff = rd32(c + 42);
  if (cd_end - *pos - 46 < nlen + xlen + clen)
    return df_err_set(err, DF_EFORMAT,
                      "%s: central directory entry at offset %zu runs past the "
                      "directory's end", f->path, *pos);
  const char *name = (const char *)c + 46;
  if (nlen == 0 || memchr(name, 0, nlen))
    return df_err_set(err, DF_EFORMAT, "%s: central directory entry at offset %zu has "
                      "an empty or invalid name", f->path, *pos);
  if (!(z->name = malloc(nlen + 1)))
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  memcpy(z->name, name, nlen);
  z->name[nlen] = '\0';
  const char *qn = df_err_quote(qb, sizeof qb, z->name, nlen);

  /* ZIP64 extra field: 64-bit values for the 32-bit fields set to ~0, in
  ** this order: uncompressed size, compressed size, local header offset. */
  uint64_t *fld[3] = {&usize, &csize, &loff};
  unsigned wide = 0; /* bit k: field k is 0xFFFFFFFF, still to be read */
  for (int k = 0; k < 3; k++)
    if (*fld[k] == 0xFFFFFFFFu) wide |= 1u << k;
  const unsigned char *x = c + 46 + nlen, *xend = x + xlen;
  while (xend - x >= 4) {
    unsigned id = rd16(x), sz = rd16(x + 2);
    if ((size_t)(xend - x - 4) < sz)
      return df_err_set(err, DF_EFORMAT, "%s: entry '%s': extra field runs past its "
                        "end", f->path, qn);
    const unsigned char *q = x + 4, *qe = x + 4 + sz;
    for (int k = 0; id == 0x0001 && k < 3; k++) {
      if (!(wide & (1u << k))) continue;
      if (qe - q < 8)
        return df_err_set(err, DF_EFORMAT, "%s: entry '%s': ZIP64 extra field is too "
                          "short", f->path, qn);
      *fld[k] = rd64(q);
      q += 8;
      wide &= ~(1u << k);
    }
    x += 4 + sz;
  }
  if (wide)
    return df_err_set(err, DF_EFORMAT, "%s: entry '%s': 32-bit size or offset set to "
                      "0xFFFFFFFF without a ZIP64 extra field", f->path, qn);
  if (flags & 0x41)
    return df_err_set(err, DF_EUNSUPPORTED, "%s: entry '%s' is encrypted", f->path, qn);
  if (method != 0)
    return df_err_set(err, DF_EUNSUPPORTED,
                      "%s: entry '%s' is compressed (zip method %u); only stored "
                      "entries are read (torch.save writes them uncompressed)",
                      f->path, qn, method);
  if (csize != usize)
    return df_err_set(err, DF_EFORMAT, "%s: entry '%s' is stored but its sizes differ "
                      "(%llu and %llu)", f->path, qn, (unsigned long long)csize,
                      (unsigned long long)usize);

  /* Local header: same name and method; data right after its extra field. */
  if (loff > cd_off || cd_off - loff < 30 || rd32(b + loff) != 0x04034b50)
    return df_err_set(err, DF_EFORMAT,
                      "%s: entry '%s': local header at offset %llu is missing or out "
                      "of range", f->path, qn, (unsigned long long)loff);
  const unsigned char *l = b + loff;
  uint64_t data = loff + 30 + (uint64_t)rd16(l + 26) + rd16(l + 28);
  if (data > cd_off || csize > cd_off - data)
    return df_err_set(err, DF_EFORMAT,
                      "%s: entry '%s': data [%llu, +%llu) runs into the central "
                      "directory at %zu (file truncated or corrupt?)", f->path, qn,
                      (unsigned long long)data, (unsigned long long)csize, cd_off);
  if (rd16(l + 26) != nlen || memcmp(l + 30, name, nlen) != 0 || rd16(l + 8) != method)
    return df_err_set(err, DF_EFORMAT, "%s: entry '%s': local header does not match "
                      "the central directory", f->path, qn);
  z->off = data;
  z->size = csize;
  z->crc = rd32(c + 16);
  *pos += 46 + nlen + xlen + clen;
  return 0;
}

/*
** Read the archive's directory into f->ent (sorted by name) and find the
** archive folder: the part of the first entry's name before its '/', as
** PyTorch does.  Checks the byteorder entry when there is one.
*/
static int zip_read(df_pth_file *f, df_err *err) {
  uint64_t nent = 0, cd_off = 0, cd_size = 0;
  int rc = zip_find_cd(f, &nent, &cd_off, &cd_size, err);
  if (rc) return rc;
  if (!(f->ent = calloc((size_t)nent, sizeof *f->ent)))
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  size_t pos = (size_t)cd_off, cd_end = (size_t)(cd_off + cd_size);
  for (uint64_t i = 0; i < nent; i++) {
    f->nent = (size_t)i + 1;
    if ((rc = zip_entry(f, &pos, (size_t)cd_off, cd_end, &f->ent[i], err))) return rc;
  }
  char qb[128];
  const char *slash = strchr(f->ent[0].name, '/');
  if (!slash)
    return df_err_set(err, DF_EFORMAT, "%s: entry '%s' is not inside a folder (not a "
                      "torch.save archive)", f->path,
                      ename(f, qb, sizeof qb, f->ent[0].name));
  size_t pl = (size_t)(slash - f->ent[0].name) + 1;
  if (!(f->prefix = malloc(pl + 1)))
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  memcpy(f->prefix, f->ent[0].name, pl);
  f->prefix[pl] = '\0';
  qsort(f->ent, f->nent, sizeof *f->ent, cmp_entry);
  for (size_t i = 1; i < f->nent; i++)
    if (strcmp(f->ent[i - 1].name, f->ent[i].name) == 0)
      return df_err_set(err, DF_EFORMAT, "%s: entry '%s' appears twice", f->path,
                        df_err_quote(qb, sizeof qb, f->ent[i].name,
                                     strlen(f->ent[i].name)));

  zentry *bo = zip_find(f, "byteorder");
  if (bo) {
    if ((rc = zip_check_crc(f, bo, err))) return rc;
    const char *s = (const char *)f->base + bo->off;
    if (bo->size == 3 && memcmp(s, "big", 3) == 0)
      return df_err_set(err, DF_EUNSUPPORTED, "%s: the checkpoint was written on a "
                        "big-endian machine; not supported", f->path);
    if (bo->size != 6 || memcmp(s, "little", 6) != 0)
      return df_err_set(err, DF_EFORMAT, "%s: byteorder entry is '%s', expected "
                        "'little'", f->path,
                        df_err_quote(qb, sizeof qb, s, bo->size > 64 ? 64 : bo->size));
  }
  return 0;
}

/* --------------------------------------------------------------- pickle */

/* The allowed globals.  Storage classes carry their dtype; those with
** dtype -1 are known but refused, naming the element type. */
enum { G_ODICT, G_REBUILD, G_NAMESPACE, G_SIZE, G_STORAGE };
static const struct {
  const char *mod, *name;
  int what, dtype;
  const char *elem;
} globals[] = {
  {"collections", "OrderedDict", G_ODICT, -1, NULL},
  {"torch._utils", "_rebuild_tensor_v2", G_REBUILD, -1, NULL},
  {"argparse", "Namespace", G_NAMESPACE, -1, NULL},
  {"torch", "Size", G_SIZE, -1, NULL},
  {"torch", "FloatStorage", G_STORAGE, DF_F32, "float32"},
  {"torch", "HalfStorage", G_STORAGE, DF_F16, "float16"},
  {"torch", "BFloat16Storage", G_STORAGE, DF_BF16, "bfloat16"},
  {"torch", "DoubleStorage", G_STORAGE, DF_F64, "float64"},
  {"torch", "LongStorage", G_STORAGE, DF_I64, "int64"},
  {"torch", "IntStorage", G_STORAGE, DF_I32, "int32"},
  {"torch", "ByteStorage", G_STORAGE, DF_U8, "uint8"},
  {"torch", "BoolStorage", G_STORAGE, DF_BOOL, "bool"},
  {"torch", "UntypedStorage", G_STORAGE, DF_U8, "bytes"},
  {"torch", "ShortStorage", G_STORAGE, -1, "int16"},
  {"torch", "CharStorage", G_STORAGE, -1, "int8"},
  {"torch", "ComplexFloatStorage", G_STORAGE, -1, "complex64"},
  {"torch", "ComplexDoubleStorage", G_STORAGE, -1, "complex128"},
};
#define NGLOBALS (sizeof globals / sizeof *globals)

typedef struct {
  df_pth_file *f;
  const unsigned char *p;   /* data.pkl */
  size_t n, pos, op_pos;
  df_pth_value **stack;
  size_t sp, scap;
  size_t marks[DF_PTH_MAX_DEPTH];
  int nmarks;
  df_pth_value **memo;      /* indices < n + 1: every BINPUT takes a byte */
  size_t mcap, mcount;      /* slots; slots set (MEMOIZE's next index) */
  df_err *err;
} unpickler;

/* A format error at the current opcode: "path: data.pkl: offset N: ...". */
__attribute__((format(printf, 2, 3)))
static int perr(unpickler *u, const char *fmt, ...) {
  char m[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  return df_err_set(u->err, DF_EFORMAT, "%s: data.pkl: offset %zu: %s", u->f->path,
                    u->op_pos, m);
}

static int oom(unpickler *u) {
  return df_err_set(u->err, DF_ENOMEM, "%s: data.pkl: out of memory", u->f->path);
}

/* Room for `need` pointers in *arr (capacity *cap, doubled as needed). */
static int grow(df_pth_value ***arr, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 8;
  while (nc < need) {
    if (nc > SIZE_MAX / 2 / sizeof **arr) return -1;
    nc *= 2;
  }
  df_pth_value **p = realloc(*arr, nc * sizeof *p);
  if (!p) return -1;
  *arr = p;
  *cap = nc;
  return 0;
}

static df_pth_value *new_value(unpickler *u, int kind) {
  df_pth_file *f = u->f;
  df_pth_value *v = calloc(1, sizeof *v);
  if (!v || grow(&f->vals, &f->capvals, f->nvals + 1)) {
    free(v);
    oom(u);
    return NULL;
  }
  f->vals[f->nvals++] = v;
  v->kind = (unsigned char)kind;
  return v;
}

static int push(unpickler *u, df_pth_value *v) {
  if (!v) return -1;
  if (u->sp >= MAX_STACK) return perr(u, "stack deeper than %zu entries", MAX_STACK);
  if (grow(&u->stack, &u->scap, u->sp + 1)) return oom(u);
  u->stack[u->sp++] = v;
  return 0;
}

static size_t floor_of(const unpickler *u) {
  return u->nmarks ? u->marks[u->nmarks - 1] : 0;
}

/* The top of the stack (above the last MARK), or NULL with an error. */
static df_pth_value *top(unpickler *u) {
  if (u->sp <= floor_of(u)) {
    perr(u, "stack underflow");
    return NULL;
  }
  return u->stack[u->sp - 1];
}

static df_pth_value *pop(unpickler *u) {
  df_pth_value *v = top(u);
  if (v) u->sp--;
  return v;
}

/* Pop the last MARK; the values pushed since are stack[*start, sp). */
static int pop_mark(unpickler *u, size_t *start) {
  if (u->nmarks == 0) return perr(u, "no MARK on the stack");
  *start = u->marks[--u->nmarks];
  return 0;
}

/* Make `need` more bytes available at u->pos. */
static int need(unpickler *u, size_t k) {
  if (u->n - u->pos < k)
    return perr(u, "opcode 0x%02x needs %zu bytes, %zu left (data.pkl truncated?)",
                u->p[u->op_pos], k, u->n - u->pos);
  return 0;
}

static int append(unpickler *u, df_pth_value *seq, df_pth_value *item) {
  if (grow(&seq->items, &seq->cap, seq->len + 1)) return oom(u);
  seq->items[seq->len++] = item;
  return 0;
}

static int dict_set(unpickler *u, df_pth_value *d, df_pth_value *k, df_pth_value *v) {
  if (d->kind != DF_PTH_DICT)
    return perr(u, "setting an item on %s, expected a dict", a_kind(d->kind));
  if (k->kind != DF_PTH_STR && k->kind != DF_PTH_INT)
    return perr(u, "dict key is %s; only str and int keys are read", a_kind(k->kind));
  size_t cap = d->cap;
  if (grow(&d->items, &cap, d->len + 1) || grow(&d->keys, &d->cap, d->len + 1))
    return oom(u);
  d->keys[d->len] = k;
  d->items[d->len++] = v;
  return 0;
}

/* A tuple or list of stack[start, start + n), which is then popped. */
static int make_seq(unpickler *u, int kind, size_t start) {
  df_pth_value *v = new_value(u, kind);
  if (!v) return -1;
  size_t n = u->sp - start;
  if (n) {
    if (!(v->items = malloc(n * sizeof *v->items))) return oom(u);
    memcpy(v->items, u->stack + start, n * sizeof *v->items);
    v->len = v->cap = n;
  }
  u->sp = start;
  return push(u, v);
}

/* Well-formed UTF-8; lone surrogates allowed (pickle writes str with
** "surrogatepass"). */
static int utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) { i++; continue; }
    else if (c >= 0xC2 && c <= 0xDF) k = 1;
    else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; }
    else if (c >= 0xF0 && c <= 0xF4) {
      k = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n - i - 1 < k || s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xC0) != 0x80) return 0;
    i += k + 1;
  }
  return 1;
}

/* A str or bytes of `len` bytes read from the pickle. */
static int op_string(unpickler *u, int kind, uint64_t len) {
  if (len > u->n - u->pos)
    return perr(u, "string of %llu bytes runs past the end of data.pkl",
                (unsigned long long)len);
  const unsigned char *s = u->p + u->pos;
  if (kind == DF_PTH_STR && !utf8_ok(s, (size_t)len))
    return perr(u, "string is not valid UTF-8");
  df_pth_value *v = new_value(u, kind);
  if (!v) return -1;
  if (!(v->s = malloc((size_t)len + 1))) return oom(u);
  memcpy(v->s, s, (size_t)len);
  v->s[len] = '\0';
  v->len = (size_t)len;
  u->pos += (size_t)len;
  return push(u, v);
}

static int push_int(unpickler *u, int kind, int64_t i) {
  df_pth_value *v = new_value(u, kind);
  if (v) v->i = i;
  return push(u, v);
}

/* LONG1 / LONG4: a little-endian two's complement integer of `len` bytes. */
static int op_long(unpickler *u, uint64_t len) {
  if (len > 8) return perr(u, "integer of %llu bytes; only 64-bit integers are read",
                           (unsigned long long)len);
  if (need(u, (size_t)len)) return -1;
  uint64_t x = 0;
  for (size_t k = 0; k < len; k++) x |= (uint64_t)u->p[u->pos + k] << (8 * k);
  if (len && len < 8 && (u->p[u->pos + len - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * len);
  u->pos += (size_t)len;
  return push_int(u, DF_PTH_INT, (int64_t)x);
}

/* "module.name" of a global for messages. */
static const char *gname(char *buf, size_t bufsz, const char *mod, size_t ml,
                         const char *name, size_t nl) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%.*s.%.*s", (int)(ml > 140 ? 140 : ml), mod,
           (int)(nl > 140 ? 140 : nl), name);
  return df_err_quote(buf, bufsz, tmp, strlen(tmp));
}

/* Resolve a global against the allow-list; refuse anything else. */
static int push_global(unpickler *u, const char *mod, size_t ml, const char *name,
                       size_t nl) {
  char qb[200];
  for (size_t g = 0; g < NGLOBALS; g++) {
    if (strlen(globals[g].mod) != ml || memcmp(globals[g].mod, mod, ml) ||
        strlen(globals[g].name) != nl || memcmp(globals[g].name, name, nl))
      continue;
    if (globals[g].what == G_STORAGE && globals[g].dtype < 0)
      return perr(u, "storage type '%s' (%s) is not supported (supported: float32, "
                  "float16, bfloat16, float64, int64, int32, uint8, bool)",
                  gname(qb, sizeof qb, mod, ml, name, nl), globals[g].elem);
    df_pth_value *v = new_value(u, K_GLOBAL);
    if (v) v->i = (int64_t)g;
    return push(u, v);
  }
  return df_err_set(u->err, DF_EFORMAT,
                    "%s: data.pkl: refusing global '%s' (only tensors and containers "
                    "are loaded)", u->f->path, gname(qb, sizeof qb, mod, ml, name, nl));
}

/* GLOBAL: "module\nname\n". */
static int op_global(unpickler *u) {
  const char *s[2];
  size_t l[2];
  for (int k = 0; k < 2; k++) {
    const unsigned char *nl = memchr(u->p + u->pos, '\n', u->n - u->pos);
    if (!nl) return perr(u, "GLOBAL: no end of line (data.pkl truncated?)");
    s[k] = (const char *)u->p + u->pos;
    l[k] = (size_t)(nl - (u->p + u->pos));
    u->pos += l[k] + 1;
  }
  return push_global(u, s[0], l[0], s[1], l[1]);
}

/*
** BINPERSID with ('storage', storage_type, key, location, numel): the
** entry data/<key> must hold numel elements of the type; every reference
** to one key must agree on type and numel.
*/
static int op_persid(unpickler *u) {
  df_pth_value *t = pop(u);
  if (!t) return -1;
  df_pth_value **it = t->items;
  if (t->kind != DF_PTH_TUPLE || t->len != 5 || it[0]->kind != DF_PTH_STR ||
      strcmp(it[0]->s, "storage") != 0)
    return perr(u, "persistent id is not ('storage', type, key, location, numel)");
  if (it[1]->kind != K_GLOBAL || globals[it[1]->i].what != G_STORAGE)
    return perr(u, "persistent id: storage type is %s, expected a storage class",
                a_kind(it[1]->kind));
  if (it[2]->kind != DF_PTH_STR || it[3]->kind != DF_PTH_STR)
    return perr(u, "persistent id: key and location must be strings");
  if (it[4]->kind != DF_PTH_INT || it[4]->i < 0)
    return perr(u, "persistent id: numel is not a non-negative int");
  char qb[128], rel[300];
  const char *key = df_err_quote(qb, sizeof qb, it[2]->s, it[2]->len);
  df_dtype dt = (df_dtype)globals[it[1]->i].dtype;
  uint64_t numel = (uint64_t)it[4]->i, esz = df_dtype_size(dt);
  zentry *e = NULL;
  if (it[2]->len < 200 && strlen(it[2]->s) == it[2]->len) {
    snprintf(rel, sizeof rel, "data/%s", it[2]->s);
    e = zip_find(u->f, rel);
  }
  if (!e) return perr(u, "storage '%s': no entry data/%s in the archive", key, key);
  if (numel > e->size / esz)
    return perr(u, "storage '%s' holds %llu %s elements (%llu bytes) but its entry has "
                "only %llu bytes (file truncated or corrupt?)", key,
                (unsigned long long)numel, globals[it[1]->i].elem,
                (unsigned long long)(numel > UINT64_MAX / esz ? UINT64_MAX : numel * esz),
                (unsigned long long)e->size);
  if (e->st_used && (e->st_dtype != dt || e->st_numel != numel))
    return perr(u, "storage '%s' is referenced with different types or sizes", key);
  if (zip_check_crc(u->f, e, u->err)) return -1;
  e->st_used = 1;
  e->st_dtype = dt;
  e->st_numel = numel;
  df_pth_value *v = new_value(u, K_STORAGE);
  if (v) v->st = e;
  return push(u, v);
}

/* Copy a strided view (validated: every index < storage numel) into the
** contiguous dst, a row of the last dim at a time. */
static void gather(unsigned char *dst, const unsigned char *src, size_t esz, int nd,
                   const int64_t *shape, const int64_t *stride, uint64_t off,
                   uint64_t numel) {
  int contig = 1;
  int64_t expect = 1;
  for (int d = nd - 1; d >= 0; d--) {
    if (shape[d] != 1 && stride[d] != expect) contig = 0;
    expect *= shape[d];
  }
  if (contig) {
    memcpy(dst, src + off * esz, (size_t)(numel * esz));
    return;
  }
  int64_t idx[DF_MAX_DIMS] = {0};
  uint64_t inner = (uint64_t)shape[nd - 1], istr = (uint64_t)stride[nd - 1];
  for (uint64_t r = 0, rows = numel / inner; r < rows; r++) {
    uint64_t at = off;
    for (int d = 0; d < nd - 1; d++) at += (uint64_t)idx[d] * (uint64_t)stride[d];
    if (istr == 1) {
      memcpy(dst, src + at * esz, (size_t)(inner * esz));
      dst += inner * esz;
    } else {
      for (uint64_t j = 0; j < inner; j++, dst += esz)
        memcpy(dst, src + (at + j * istr) * esz, esz);
    }
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

/* A tuple of at most DF_MAX_DIMS ints into out; the count, or -1. */
static int int_tuple(const df_pth_value *t, int64_t *out) {
  if (t->kind != DF_PTH_TUPLE || t->len > DF_MAX_DIMS) return -1;
  for (size_t i = 0; i < t->len; i++) {
    if (t->items[i]->kind != DF_PTH_INT) return -1;
    out[i] = t->items[i]->i;
  }
  return (int)t->len;
}

/*
** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
** backward_hooks[, metadata]): check that the view stays inside the
** storage (largest index offset + sum (size_i - 1) * stride_i < numel;
** strides >= 0), then copy it into a new contiguous tensor.
*/
static df_pth_value *rebuild_tensor(unpickler *u, const df_pth_value *a) {
  if (a->len != 6 && a->len != 7) {
    perr(u, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", a->len);
    return NULL;
  }
  df_pth_value *const *it = a->items;
  int64_t shape[DF_MAX_DIMS], stride[DF_MAX_DIMS];
  int nd, ns;
  if (it[0]->kind != K_STORAGE || it[1]->kind != DF_PTH_INT || it[1]->i < 0 ||
      (nd = int_tuple(it[2], shape)) < 0 || (ns = int_tuple(it[3], stride)) < 0 ||
      it[4]->kind != DF_PTH_BOOL || it[5]->kind != DF_PTH_DICT ||
      (a->len == 7 && it[6]->kind != DF_PTH_DICT && it[6]->kind != DF_PTH_NONE)) {
    perr(u, "_rebuild_tensor_v2: arguments are not (storage, offset >= 0, size "
         "tuple, stride tuple, bool, dict[, dict]) with at most %d dims", DF_MAX_DIMS);
    return NULL;
  }
  const zentry *st = it[0]->st;
  char qb[128], sb[200], tb[200];
  const char *key = ename(u->f, qb, sizeof qb, st->name);
  if (strncmp(key, "data/", 5) == 0) key += 5;
  df_shape_str(sb, sizeof sb, nd, shape);
  df_shape_str(tb, sizeof tb, ns, stride);
  if (nd != ns) {
    perr(u, "tensor on storage '%s': size %s and stride %s differ in length", key, sb, tb);
    return NULL;
  }
  for (int d = 0; d < nd; d++)
    if (shape[d] < 0 || stride[d] < 0) {
      perr(u, "tensor on storage '%s': negative size or stride (size %s, stride %s)",
           key, sb, tb);
      return NULL;
    }
  int64_t n = df_shape_numel(nd, shape);
  size_t esz = df_dtype_size(st->st_dtype);
  uint64_t off = (uint64_t)it[1]->i, numel = (uint64_t)n;
  if (n < 0 || numel > SIZE_MAX / esz) {
    perr(u, "tensor on storage '%s': size %s has too many elements", key, sb);
    return NULL;
  }
  /* the largest index, with every step checked against the storage */
  uint64_t last = off, lim = st->st_numel;
  int ok = numel ? off < lim : off <= lim;
  for (int d = 0; ok && numel && d < nd; d++) {
    uint64_t m = (uint64_t)shape[d] - 1, s = (uint64_t)stride[d];
    if (m && s && (s > (lim - 1 - last) / m)) ok = 0;
    else last += m * s;
  }
  if (!ok) {
    perr(u, "tensor on storage '%s': view (offset %llu, size %s, stride %s) reaches "
         "past the storage's %llu elements", key, (unsigned long long)off, sb, tb,
         (unsigned long long)lim);
    return NULL;
  }
  uint64_t bytes = numel * esz;
  if (bytes > u->f->tensor_cap - u->f->tensor_bytes) {
    perr(u, "tensors would take more than %llu bytes, %d times the file size plus "
         "64 MiB (views repeating one storage?)",
         (unsigned long long)u->f->tensor_cap, EXPAND_FACTOR);
    return NULL;
  }
  u->f->tensor_bytes += bytes;
  df_err e2;
  df_err_clear(&e2);
  df_tensor *t = df_tensor_new(st->st_dtype, nd, shape, &e2);
  if (!t) {
    df_err_set(u->err, e2.code, "%s: data.pkl: %s", u->f->path, e2.msg);
    return NULL;
  }
  if (numel) gather(t->data, u->f->base + st->off, esz, nd, shape, stride, off, numel);
  df_pth_value *v = new_value(u, DF_PTH_TENSOR);
  if (!v) {
    df_tensor_unref(t);
    return NULL;
  }
  v->tensor = t;
  return v;
}

/* REDUCE / NEWOBJ: call an allowed global on an argument tuple. */
static int op_call(unpickler *u, int newobj) {
  df_pth_value *args = pop(u), *fn = args ? pop(u) : NULL;
  if (!fn) return -1;
  if (fn->kind != K_GLOBAL)
    return perr(u, "%s of %s; only allowed globals can be called",
                newobj ? "NEWOBJ" : "REDUCE", a_kind(fn->kind));
  if (args->kind != DF_PTH_TUPLE)
    return perr(u, "%s arguments are %s, expected a tuple",
                newobj ? "NEWOBJ" : "REDUCE", a_kind(args->kind));
  char qb[200];
  const char *name = gname(qb, sizeof qb, globals[fn->i].mod, strlen(globals[fn->i].mod),
                           globals[fn->i].name, strlen(globals[fn->i].name));
  df_pth_value *v = NULL;
  switch (globals[fn->i].what) {
  case G_ODICT:
  case G_NAMESPACE:
    if (args->len != 0)
      return perr(u, "%s called with %zu arguments; only the empty form is read",
                  name, args->len);
    if ((v = new_value(u, DF_PTH_DICT)))
      v->flags = globals[fn->i].what == G_ODICT ? V_ODICT : V_OBJECT;
    break;
  case G_SIZE:
    if (args->len != 1 || args->items[0]->kind != DF_PTH_TUPLE)
      return perr(u, "torch.Size takes one tuple");
    v = args->items[0];
    break;
  case G_REBUILD:
    if (newobj) return perr(u, "NEWOBJ of %s", name);
    v = rebuild_tensor(u, args);
    break;
  default:
    return perr(u, "'%s' cannot be called", name);
  }
  return v ? push(u, v) : -1;
}

/*
** BUILD: set the state of the object below it, once.  argparse.Namespace
** takes a dict of attributes: they become its entries.  An OrderedDict's
** state holds attributes such as a state_dict's _metadata, not items:
** dropped.  (Once only: repeating a BUILD of a large state must not
** multiply memory.)
*/
static int op_build(unpickler *u) {
  df_pth_value *state = pop(u), *obj = state ? top(u) : NULL;
  if (!obj) return -1;
  if (obj->kind == DF_PTH_DICT && obj->flags && state->kind == DF_PTH_DICT) {
    if (obj->flags & V_OBJECT)
      for (size_t i = 0; i < state->len; i++)
        if (dict_set(u, obj, state->keys[i], state->items[i])) return -1;
    obj->flags = 0;
    return 0;
  }
  return perr(u, "BUILD of %s with %s state is not supported", a_kind(obj->kind),
              a_kind(state->kind));
}

static int memo_put(unpickler *u, uint64_t idx) {
  df_pth_value *v = top(u);
  if (!v) return -1;
  if (idx > u->n) return perr(u, "memo index %llu is out of range",
                              (unsigned long long)idx);
  size_t old = u->mcap;
  if (grow(&u->memo, &u->mcap, (size_t)idx + 1)) return oom(u);
  if (u->mcap > old) memset(u->memo + old, 0, (u->mcap - old) * sizeof *u->memo);
  if (!u->memo[idx]) u->mcount++;
  u->memo[idx] = v;
  return 0;
}

static int memo_get(unpickler *u, uint64_t idx) {
  if (idx >= u->mcap || !u->memo[idx])
    return perr(u, "memo get of unset index %llu", (unsigned long long)idx);
  return push(u, u->memo[idx]);
}

/* Names of opcodes that exist but are refused (several can run code). */
static const char *opname(int op) {
  switch (op) {
  case 'i': return "INST";
  case 'o': return "OBJ";
  case 'P': return "PERSID";
  case 0x92: return "NEWOBJ_EX";
  case 0x82: case 0x83: case 0x84: return "EXT";
  case 'I': return "INT";
  case 'L': return "LONG";
  case 'F': return "FLOAT";
  case 'S': case 'T': case 'U': return "STRING";
  case 'V': return "UNICODE";
  case 'p': return "PUT";
  case 'g': return "GET";
  case 0x8f: return "EMPTY_SET";
  case 0x90: return "ADDITEMS";
  case 0x91: return "FROZENSET";
  case 0x96: return "BYTEARRAY8";
  case 0x97: return "NEXT_BUFFER";
  case 0x98: return "READONLY_BUFFER";
  }
  return NULL;
}

/* One opcode.  Returns 0, 1 at STOP (result in u->f->root), or an error. */
static int step(unpickler *u) {
  if (u->pos >= u->n) {
    u->op_pos = u->pos;
    return perr(u, "data.pkl ends without a STOP opcode (truncated?)");
  }
  u->op_pos = u->pos;
  int op = u->p[u->pos++];
  const unsigned char *a = u->p + u->pos;
  size_t start = 0;
  df_pth_value *v, *w, *k;
  switch (op) {
  case 0x80: /* PROTO */
    if (need(u, 1)) return -1;
    if (a[0] > 5) return perr(u, "pickle protocol %d is not supported", a[0]);
    u->pos++;
    return 0;
  case 0x95: /* FRAME: a length hint */
    if (need(u, 8)) return -1;
    u->pos += 8;
    return 0;
  case '.': /* STOP */
    if (!(u->f->root = pop(u))) return -1;
    return 1;
  case '(': /* MARK */
    if (u->nmarks >= DF_PTH_MAX_DEPTH)
      return perr(u, "more than %d nested MARKs", DF_PTH_MAX_DEPTH);
    u->marks[u->nmarks++] = u->sp;
    return 0;
  case '0': /* POP */
    return pop(u) ? 0 : -1;
  case '1': /* POP_MARK */
    if (pop_mark(u, &start)) return -1;
    u->sp = start;
    return 0;
  case '2': /* DUP */
    return (v = top(u)) ? push(u, v) : -1;
  case 'N': return push(u, new_value(u, DF_PTH_NONE));
  case 0x88: return push_int(u, DF_PTH_BOOL, 1);
  case 0x89: return push_int(u, DF_PTH_BOOL, 0);
  case 'J': /* BININT */
    if (need(u, 4)) return -1;
    u->pos += 4;
    return push_int(u, DF_PTH_INT, (int32_t)rd32(a));
  case 'K': /* BININT1 */
    if (need(u, 1)) return -1;
    u->pos += 1;
    return push_int(u, DF_PTH_INT, a[0]);
  case 'M': /* BININT2 */
    if (need(u, 2)) return -1;
    u->pos += 2;
    return push_int(u, DF_PTH_INT, rd16(a));
  case 0x8a: /* LONG1 */
    if (need(u, 1)) return -1;
    u->pos += 1;
    return op_long(u, a[0]);
  case 0x8b: /* LONG4 */
    if (need(u, 4)) return -1;
    u->pos += 4;
    return op_long(u, rd32(a));
  case 'G': { /* BINFLOAT: big-endian */
    if (need(u, 8)) return -1;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | a[i];
    u->pos += 8;
    if (!(v = new_value(u, DF_PTH_FLOAT))) return -1;
    memcpy(&v->f, &x, 8);
    return push(u, v);
  }
  case 0x8c: /* SHORT_BINUNICODE */
  case 'C':  /* SHORT_BINBYTES */
    if (need(u, 1)) return -1;
    u->pos += 1;
    return op_string(u, op == 'C' ? DF_PTH_BYTES : DF_PTH_STR, a[0]);
  case 'X': /* BINUNICODE */
  case 'B': /* BINBYTES */
    if (need(u, 4)) return -1;
    u->pos += 4;
    return op_string(u, op == 'B' ? DF_PTH_BYTES : DF_PTH_STR, rd32(a));
  case 0x8d: /* BINUNICODE8 */
  case 0x8e: /* BINBYTES8 */
    if (need(u, 8)) return -1;
    u->pos += 8;
    return op_string(u, op == 0x8e ? DF_PTH_BYTES : DF_PTH_STR, rd64(a));
  case ')': /* EMPTY_TUPLE */
    return make_seq(u, DF_PTH_TUPLE, u->sp);
  case 't': /* TUPLE */
    return pop_mark(u, &start) ? -1 : make_seq(u, DF_PTH_TUPLE, start);
  case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
    if (u->sp - floor_of(u) < (size_t)(op - 0x84)) return perr(u, "stack underflow");
    return make_seq(u, DF_PTH_TUPLE, u->sp - (size_t)(op - 0x84));
  case ']': /* EMPTY_LIST */
    return make_seq(u, DF_PTH_LIST, u->sp);
  case 'l': /* LIST */
    return pop_mark(u, &start) ? -1 : make_seq(u, DF_PTH_LIST, start);
  case 'a': /* APPEND */
    if (!(v = pop(u)) || !(w = top(u))) return -1;
    if (w->kind != DF_PTH_LIST)
      return perr(u, "APPEND to %s, expected a list", a_kind(w->kind));
    return append(u, w, v);
  case 'e': /* APPENDS */
    if (pop_mark(u, &start)) return -1;
    if (start <= floor_of(u) || (w = u->stack[start - 1])->kind != DF_PTH_LIST)
      return perr(u, "APPENDS without a list below its MARK");
    for (size_t i = start; i < u->sp; i++)
      if (append(u, w, u->stack[i])) return -1;
    u->sp = start;
    return 0;
  case '}': /* EMPTY_DICT */
    return push(u, new_value(u, DF_PTH_DICT));
  case 'd': /* DICT */
  case 'u': /* SETITEMS */
    if (pop_mark(u, &start)) return -1;
    if ((u->sp - start) % 2) return perr(u, "odd number of items for a dict");
    if (op == 'd') {
      if (!(w = new_value(u, DF_PTH_DICT))) return -1;
    } else if (start <= floor_of(u)) {
      return perr(u, "SETITEMS without a dict below its MARK");
    } else {
      w = u->stack[start - 1];
    }
    for (size_t i = start; i < u->sp; i += 2)
      if (dict_set(u, w, u->stack[i], u->stack[i + 1])) return -1;
    u->sp = start;
    return op == 'd' ? push(u, w) : 0;
  case 's': /* SETITEM */
    if (!(v = pop(u)) || !(k = pop(u)) || !(w = top(u))) return -1;
    return dict_set(u, w, k, v);
  case 'q': /* BINPUT */
    if (need(u, 1)) return -1;
    u->pos += 1;
    return memo_put(u, a[0]);
  case 'r': /* LONG_BINPUT */
    if (need(u, 4)) return -1;
    u->pos += 4;
    return memo_put(u, rd32(a));
  case 0x94: /* MEMOIZE: at index len(memo), as Python does */
    return memo_put(u, u->mcount);
  case 'h': /* BINGET */
    if (need(u, 1)) return -1;
    u->pos += 1;
    return memo_get(u, a[0]);
  case 'j': /* LONG_BINGET */
    if (need(u, 4)) return -1;
    u->pos += 4;
    return memo_get(u, rd32(a));
  case 'c': /* GLOBAL */
    return op_global(u);
  case 0x93: /* STACK_GLOBAL */
    if (!(v = pop(u)) || !(w = pop(u))) return -1;
    if (v->kind != DF_PTH_STR || w->kind != DF_PTH_STR)
      return perr(u, "STACK_GLOBAL needs two strings");
    return push_global(u, w->s, w->len, v->s, v->len);
  case 'R': /* REDUCE */
    return op_call(u, 0);
  case 0x81: /* NEWOBJ */
    return op_call(u, 1);
  case 'b': /* BUILD */
    return op_build(u);
  case 'Q': /* BINPERSID */
    return op_persid(u);
  }
  const char *nm = opname(op);
  if (nm) return perr(u, "pickle opcode %s (0x%02x) is not supported", nm, op);
  return perr(u, "unknown pickle opcode 0x%02x", op);
}

static int unpickle(df_pth_file *f, df_err *err) {
  zentry *e = zip_find(f, "data.pkl");
  char qb[128];
  if (!e)
    return df_err_set(err, DF_EFORMAT, "%s: no %sdata.pkl in the archive (not a "
                      "torch.save checkpoint?)", f->path,
                      df_err_quote(qb, sizeof qb, f->prefix, strlen(f->prefix)));
  int rc = zip_check_crc(f, e, err);
  if (rc) return rc;
  unpickler u = {.f = f, .p = f->base + e->off, .n = (size_t)e->size, .err = err};
  while ((rc = step(&u)) == 0) {}
  free(u.stack);
  free(u.memo);
  return rc < 0 ? (err && err->code ? err->code : DF_EFORMAT) : 0;
}

/* ----------------------------------------------------------------- tree */

static int cmp_key(const void *a, const void *b) {
  const df_pth_value *x = *(const df_pth_value *const *)a,
                     *y = *(const df_pth_value *const *)b;
  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  if (x->kind == DF_PTH_INT) return x->i < y->i ? -1 : x->i > y->i;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return memcmp(x->s, y->s, x->len);
}

static int check_dup_keys(df_pth_file *f, const df_pth_value *d, df_err *err) {
  if (d->len < 2) return 0;
  df_pth_value **k = malloc(d->len * sizeof *k);
  if (!k) return df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
  memcpy(k, d->keys, d->len * sizeof *k);
  qsort(k, d->len, sizeof *k, cmp_key);
  int rc = 0;
  for (size_t i = 1; i < d->len && !rc; i++)
    if (cmp_key(&k[i - 1], &k[i]) == 0) {
      char qb[128];
      if (k[i]->kind == DF_PTH_INT)
        snprintf(qb, sizeof qb, "%lld", (long long)k[i]->i);
      else
        df_err_quote(qb, sizeof qb, k[i]->s, k[i]->len);
      rc = df_err_set(err, DF_EFORMAT, "%s: data.pkl: a dict has the key '%s' twice",
                      f->path, qb);
    }
  free(k);
  return rc;
}

static int not_data(df_pth_file *f, const df_pth_value *v, df_err *err) {
  if (v->kind == K_GLOBAL) {
    char qb[200];
    const char *m = globals[v->i].mod, *n = globals[v->i].name;
    return df_err_set(err, DF_EFORMAT, "%s: data.pkl: the global '%s' is stored as a "
                      "value (only tensors and containers are loaded)", f->path,
                      gname(qb, sizeof qb, m, strlen(m), n, strlen(n)));
  }
  return df_err_set(err, DF_EFORMAT, "%s: data.pkl: a storage is stored outside a "
                    "tensor (not supported)", f->path);
}

/* A finished child c of v: v's height and expanded size grow. */
static void add_child(df_pth_value *v, const df_pth_value *c) {
  if (c->height + 1 > v->height) v->height = c->height + 1;
  v->expand = c->expand > UINT64_MAX - v->expand ? UINT64_MAX : v->expand + c->expand;
}

/*
** Walk the finished tree from the root without recursion: colour 1 marks
** the values on the current path (meeting one again is a cycle), colour 2
** the finished ones, whose height and expanded size (values counted once
** per path that reaches them) are known.  Every path must hold at most
** DF_PTH_MAX_DEPTH values, so callers may recurse over the tree, and the
** expanded size is bounded, so a walk that does not remember shared values
** ends too (no "billion laughs").
*/
static int check_tree(df_pth_file *f, df_err *err) {
  struct { df_pth_value *v; size_t next; } st[DF_PTH_MAX_DEPTH];
  uint64_t max_expand = (uint64_t)f->nvals * 16 + ((uint64_t)1 << 20);
  df_pth_value *r = f->root;
  if (r->kind > DF_PTH_TENSOR) return not_data(f, r, err);
  int d = 1, rc;
  st[0].v = r;
  st[0].next = 0;
  r->color = 1;
  r->height = 1;
  r->expand = 1;
  while (d > 0) {
    df_pth_value *v = st[d - 1].v;
    int is_seq = v->kind == DF_PTH_TUPLE || v->kind == DF_PTH_LIST;
    size_t nchild = v->kind == DF_PTH_DICT ? 2 * v->len : is_seq ? v->len : 0;
    if (st[d - 1].next < nchild) {
      size_t i = st[d - 1].next++;
      df_pth_value *c = v->kind == DF_PTH_DICT ? (i % 2 ? v->items : v->keys)[i / 2]
                                               : v->items[i];
      if (c->kind > DF_PTH_TENSOR) return not_data(f, c, err);
      if (c->color == 1)
        return df_err_set(err, DF_EFORMAT, "%s: data.pkl: a container holds itself "
                          "(the object graph has a cycle)", f->path);
      if (c->color == 2) {
        if (d + c->height > DF_PTH_MAX_DEPTH) break;
        add_child(v, c);
        continue;
      }
      if (d == DF_PTH_MAX_DEPTH) break;
      c->color = 1;
      c->height = 1;
      c->expand = 1;
      st[d].v = c;
      st[d++].next = 0;
    } else {
      if (v->kind == DF_PTH_DICT && (rc = check_dup_keys(f, v, err))) return rc;
      if (v->expand > max_expand)
        return df_err_set(err, DF_EFORMAT, "%s: data.pkl: shared values expand to more "
                          "than %llu values (a \"billion laughs\" pickle?)", f->path,
                          (unsigned long long)max_expand);
      v->color = 2;
      if (--d > 0) add_child(st[d - 1].v, v);
    }
  }
  if (d > 0)
    return df_err_set(err, DF_EFORMAT, "%s: data.pkl: values are nested more than %d "
                      "deep", f->path, DF_PTH_MAX_DEPTH);
  return 0;
}

/* Find the state dict (see pth.h); a failure is kept for
** df_pth_state_dict, it does not fail the open. */
static void find_state_dict(df_pth_file *f) {
  const df_pth_value *r = f->root, *sd = r;
  const char *which = "";
  df_err *err = &f->sd_err;
  if (r->kind != DF_PTH_DICT) {
    df_err_set(err, DF_ESHAPE, "%s: the checkpoint holds %s, not a dict (no state "
               "dict)", f->path, a_kind(r->kind));
    return;
  }
  if ((sd = df_pth_get(r, "model"))) which = "model";
  else if ((sd = df_pth_get(r, "module"))) which = "module";
  else sd = r;
  char where[32];
  snprintf(where, sizeof where, *which ? "root['%s']" : "the root", which);
  if (sd->kind != DF_PTH_DICT) {
    df_err_set(err, DF_ESHAPE, "%s: %s is %s, expected a dict of tensors", f->path,
               where, a_kind(sd->kind));
    return;
  }
  f->sd_names = calloc(sd->len ? sd->len : 1, sizeof *f->sd_names);
  f->sd_t = calloc(sd->len ? sd->len : 1, sizeof *f->sd_t);
  if (!f->sd_names || !f->sd_t || sd->len > INT32_MAX) {
    df_err_set(err, DF_ENOMEM, "%s: out of memory", f->path);
    return;
  }
  for (size_t i = 0; i < sd->len; i++) {
    const df_pth_value *k = sd->keys[i], *v = sd->items[i];
    char qb[128];
    if (k->kind != DF_PTH_STR || strlen(k->s) != k->len) {
      df_err_set(err, DF_ESHAPE, "%s: %s has a key that is not a name (entry %zu)",
                 f->path, where, i);
      return;
    }
    if (v->kind != DF_PTH_TENSOR) {
      df_err_set(err, DF_ESHAPE, "%s: %s['%s'] is %s, expected a tensor", f->path,
                 where, df_err_quote(qb, sizeof qb, k->s, k->len), a_kind(v->kind));
      return;
    }
    f->sd_names[i] = k->s;
    f->sd_t[i] = v->tensor;
  }
  f->sd_n = (int)sd->len;
  f->sd_which = which;
}

/* ----------------------------------------------------------------- API */

void df_pth_close(df_pth_file *f) {
  if (!f) return;
  for (size_t i = 0; i < f->nvals; i++) {
    df_pth_value *v = f->vals[i];
    free(v->s);
    free(v->items);
    free(v->keys);
    df_tensor_unref(v->tensor);
    free(v);
  }
  free(f->vals);
  for (size_t i = 0; i < f->nent; i++) free(f->ent[i].name);
  free(f->ent);
  free(f->prefix);
  free(f->sd_names);
  free(f->sd_t);
  free(f->path);
  free(f);
}

df_pth_file *df_pth_open_mem(const void *data, size_t size, const char *name,
                             df_err *err) {
  df_pth_file *f = calloc(1, sizeof *f);
  if (f) f->path = strdup(name ? name : "(memory)");
  if (!f || !f->path) {
    df_err_set(err, DF_ENOMEM, "%s: out of memory", name ? name : "(memory)");
    df_pth_close(f);
    return NULL;
  }
  f->base = data;
  f->size = size;
  uint64_t cap = (uint64_t)size;
  f->tensor_cap = cap > (UINT64_MAX - EXPAND_SLACK) / EXPAND_FACTOR
                      ? UINT64_MAX
                      : cap * EXPAND_FACTOR + EXPAND_SLACK;
  crc_init(f->crc_tab);
  if (zip_read(f, err) || unpickle(f, err) || check_tree(f, err)) {
    if (err && !err->code) df_err_set(err, DF_EFORMAT, "%s: malformed", f->path);
    df_pth_close(f);
    return NULL;
  }
  f->base = NULL; /* every tensor is a copy: the bytes are not needed any more */
  find_state_dict(f);
  return f;
}

df_pth_file *df_pth_open(const char *path, df_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    df_err_set(err, DF_EIO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    df_err_set(err, DF_EIO, "%s: not a regular file", path);
    close(fd);
    return NULL;
  }
  if (sb.st_size == 0) {
    df_err_set(err, DF_EFORMAT, "%s: empty file (not a torch.save checkpoint)", path);
    close(fd);
    return NULL;
  }
  size_t len = (size_t)sb.st_size;
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    df_err_set(err, DF_EIO, "%s: cannot map %zu bytes: %s", path, len, strerror(errno));
    return NULL;
  }
  df_pth_file *f = df_pth_open_mem(map, len, path, err);
  munmap(map, len);
  return f;
}

const char *df_pth_path(const df_pth_file *f) { return f ? f->path : NULL; }
const df_pth_value *df_pth_root(const df_pth_file *f) { return f ? f->root : NULL; }

df_pth_kind df_pth_type(const df_pth_value *v) {
  return v ? (df_pth_kind)v->kind : DF_PTH_NONE;
}

size_t df_pth_len(const df_pth_value *v) {
  if (!v) return 0;
  switch (v->kind) {
  case DF_PTH_STR: case DF_PTH_BYTES: case DF_PTH_TUPLE: case DF_PTH_LIST:
  case DF_PTH_DICT:
    return v->len;
  }
  return 0;
}

const df_pth_value *df_pth_item(const df_pth_value *v, size_t i) {
  if (!v || (v->kind != DF_PTH_TUPLE && v->kind != DF_PTH_LIST && v->kind != DF_PTH_DICT) ||
      i >= v->len)
    return NULL;
  return v->items[i];
}

const df_pth_value *df_pth_key(const df_pth_value *v, size_t i) {
  return v && v->kind == DF_PTH_DICT && i < v->len ? v->keys[i] : NULL;
}

const df_pth_value *df_pth_get(const df_pth_value *v, const char *key) {
  if (!v || v->kind != DF_PTH_DICT || !key) return NULL;
  size_t kl = strlen(key);
  for (size_t i = 0; i < v->len; i++) {
    const df_pth_value *k = v->keys[i];
    if (k->kind == DF_PTH_STR && k->len == kl && memcmp(k->s, key, kl) == 0)
      return v->items[i];
  }
  return NULL;
}

int64_t df_pth_int(const df_pth_value *v) {
  return v && (v->kind == DF_PTH_INT || v->kind == DF_PTH_BOOL) ? v->i : 0;
}

double df_pth_float(const df_pth_value *v) {
  if (!v) return 0;
  if (v->kind == DF_PTH_FLOAT) return v->f;
  return v->kind == DF_PTH_INT || v->kind == DF_PTH_BOOL ? (double)v->i : 0;
}

const char *df_pth_str(const df_pth_value *v) {
  return v && (v->kind == DF_PTH_STR || v->kind == DF_PTH_BYTES) ? v->s : NULL;
}

df_tensor *df_pth_tensor(const df_pth_value *v) {
  return v && v->kind == DF_PTH_TENSOR ? v->tensor : NULL;
}

int df_pth_state_dict(const df_pth_file *f, const char **which, df_err *err) {
  if (which) *which = NULL;
  if (!f) return df_err_set(err, DF_EINVAL, "df_pth_state_dict: no file");
  if (f->sd_err.code) return df_err_set(err, f->sd_err.code, "%s", f->sd_err.msg);
  if (which) *which = f->sd_which;
  return f->sd_n;
}

const char *df_pth_sd_name(const df_pth_file *f, int i) {
  return f && i >= 0 && i < f->sd_n ? f->sd_names[i] : NULL;
}

df_tensor *df_pth_sd_tensor(const df_pth_file *f, int i) {
  return f && i >= 0 && i < f->sd_n ? f->sd_t[i] : NULL;
}

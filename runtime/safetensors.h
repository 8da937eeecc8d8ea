/*
** safetensors.h -- reader and writer for the safetensors format
** (8-byte little-endian header length N, N bytes of JSON header, then the
** data area).
**
** Reader: df_st_open() maps the file read-only and validates the whole
** header before returning: JSON well-formed and an object; every entry has
** a known dtype, a shape of non-negative ints (rank <= DF_MAX_DIMS) and
** data_offsets [begin, end] inside the data area with end - begin equal to
** numel * dtype size; no two tensors overlap; names are unique.  Every
** error names the file and, where there is one, the tensor.  The handle
** owns the mapping; pointers from df_st_data() live until df_st_close().
**
** Writer: df_st_write() writes to PATH.tmp.<pid>, fsyncs and renames onto
** PATH, so a crash never leaves a half-written file under the real name.
*/
#ifndef DF_SAFETENSORS_H
#define DF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/dtype.h"
#include "compiler/err.h"

typedef struct df_st_file df_st_file;

df_st_file *df_st_open(const char *path, df_err *err);
void df_st_close(df_st_file *f);

const char *df_st_path(const df_st_file *f);
int df_st_count(const df_st_file *f);                 /* tensors, file order */
const char *df_st_name(const df_st_file *f, int i);
int df_st_find(const df_st_file *f, const char *name); /* index or -1 */
df_dtype df_st_dtype(const df_st_file *f, int i);
int df_st_ndim(const df_st_file *f, int i);
const int64_t *df_st_shape(const df_st_file *f, int i);
/* Raw little-endian bytes of tensor i (may be unaligned). */
const void *df_st_data(const df_st_file *f, int i, size_t *nbytes);
/* "__metadata__" entries: their count and key i, in file order. */
int df_st_metadata_count(const df_st_file *f);
const char *df_st_metadata_key(const df_st_file *f, int i);
/* Value of a "__metadata__" string entry, or NULL. */
const char *df_st_metadata(const df_st_file *f, const char *key);

typedef struct df_st_entry {
  const char *name;
  df_dtype dtype;
  int ndim;
  const int64_t *shape;
  const void *data; /* numel * dtype size bytes */
} df_st_entry;

/* Write n entries (names must be unique and non-empty) plus optional
** metadata: meta is NULL or a NULL-terminated list of key, value strings. */
int df_st_write(const char *path, const df_st_entry *entries, int n,
                const char *const *meta, df_err *err);

#endif

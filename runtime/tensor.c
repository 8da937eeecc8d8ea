/*
** tensor.c -- see tensor.h.
*/
#include "runtime/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t df_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] != 0 && n > ((int64_t)1 << 62) / shape[i]) return -1;
    n *= shape[i];
  }
  return n;
}

int64_t df_tensor_numel(const df_tensor *t) {
  return df_shape_numel(t->ndim, t->shape);
}

const char *df_shape_str(char *buf, size_t bufsz, int ndim, const int64_t *shape) {
  size_t off = 0;
  off += (size_t)snprintf(buf + off, bufsz - off, "[");
  for (int i = 0; i < ndim && off < bufsz; i++)
    off += (size_t)snprintf(buf + off, bufsz - off, "%s%lld", i ? ", " : "",
                            (long long)shape[i]);
  if (off < bufsz) snprintf(buf + off, bufsz - off, "]");
  return buf;
}

df_tensor *df_tensor_new(df_dtype dt, int ndim, const int64_t *shape, df_err *err) {
  if ((unsigned)dt >= DF_DTYPE_COUNT || ndim < 0 || ndim > DF_MAX_DIMS) {
    df_err_set(err, DF_EINVAL, "tensor: bad dtype or rank %d", ndim);
    return NULL;
  }
  int64_t n = df_shape_numel(ndim, shape);
  if (n < 0) {
    char sb[128];
    df_err_set(err, DF_EINVAL, "tensor: invalid shape %s",
               df_shape_str(sb, sizeof sb, ndim, shape));
    return NULL;
  }
  df_tensor *t = calloc(1, sizeof *t);
  size_t nb = (size_t)n * df_dtype_size(dt);
  if (t) t->data = calloc(nb ? nb : 1, 1);
  if (!t || !t->data) {
    free(t);
    df_err_set(err, DF_ENOMEM, "tensor: out of memory for %zu bytes", nb);
    return NULL;
  }
  t->dtype = dt;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->nbytes = nb;
  t->refs = 1;
  return t;
}

df_tensor *df_tensor_ref(df_tensor *t) {
  if (t) t->refs++;
  return t;
}

void df_tensor_unref(df_tensor *t) {
  if (!t || --t->refs > 0) return;
  if (t->base) df_tensor_unref(t->base);
  else free(t->data);
  free(t);
}

df_tensor *df_tensor_view(df_tensor *base, size_t offset, df_dtype dt, int ndim, const int64_t *shape,
                          df_err *err) {
  int64_t n = (unsigned)dt < DF_DTYPE_COUNT && ndim >= 0 && ndim <= DF_MAX_DIMS ? df_shape_numel(ndim, shape) : -1;
  size_t es = df_dtype_size(dt);
  if (n < 0 || offset % (es ? es : 1) != 0 || offset > base->nbytes || (size_t)n * es > base->nbytes - offset) {
    df_err_set(err, DF_EINVAL, "tensor: a view of %zu bytes at %zu does not fit %zu bytes",
               n < 0 ? 0 : (size_t)n * es, offset, base->nbytes);
    return NULL;
  }
  df_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    df_err_set(err, DF_ENOMEM, "tensor: out of memory");
    return NULL;
  }
  t->dtype = dt;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->data = (char *)base->data + offset;
  t->nbytes = (size_t)n * es;
  t->refs = 1;
  t->base = df_tensor_ref(base);
  return t;
}

df_tensor *df_tensor_cast(const df_tensor *src, df_dtype dt, df_err *err) {
  df_tensor *t = df_tensor_new(dt, src->ndim, src->shape, err);
  if (t) df_dtype_convert(dt, t->data, src->dtype, src->data, (size_t)df_tensor_numel(src));
  return t;
}

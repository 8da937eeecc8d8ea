/*
** tensor.h -- host tensors: a dtype, a shape and a contiguous row-major
** buffer that the tensor owns.
**
** Reference counted: df_tensor_new() returns a tensor with one reference;
** whoever stores a pointer takes a reference (df_tensor_ref) and gives it
** back with df_tensor_unref(); the last unref frees the buffer.
** Shapes: ndim in [0, DF_MAX_DIMS]; ndim 0 is a scalar with one element.
*/
#ifndef DF_TENSOR_H
#define DF_TENSOR_H

#include <stdint.h>
#include <stddef.h>

#include "compiler/dtype.h"
#include "compiler/err.h"

typedef struct df_tensor {
  df_dtype dtype;
  int ndim;
  int64_t shape[DF_MAX_DIMS];
  void *data;    /* numel * dtype size bytes, zero-initialised */
  size_t nbytes;
  int refs;
  struct df_tensor *base; /* a view: data lies inside base, which it keeps alive */
} df_tensor;

/* A zero-filled tensor; NULL with DF_ENOMEM / DF_EINVAL in err. */
df_tensor *df_tensor_new(df_dtype dt, int ndim, const int64_t *shape, df_err *err);
df_tensor *df_tensor_ref(df_tensor *t);
void df_tensor_unref(df_tensor *t);

int64_t df_tensor_numel(const df_tensor *t);
/* Product of the dims, or -1 if a dim is negative or the product overflows
** 2^62 (so byte counts fit in size_t). */
int64_t df_shape_numel(int ndim, const int64_t *shape);
/* "[2, 3, 4]" into buf; returns buf. */
const char *df_shape_str(char *buf, size_t bufsz, int ndim, const int64_t *shape);

/* A view of `base`'s bytes [offset, offset + numel * size): same memory,
** its own dtype and shape (offset aligned to the dtype's size).  It takes
** a reference to base; NULL with an error when it does not fit. */
df_tensor *df_tensor_view(df_tensor *base, size_t offset, df_dtype dt, int ndim, const int64_t *shape,
                          df_err *err);

/* A new tensor holding `src` converted to `dt`. */
df_tensor *df_tensor_cast(const df_tensor *src, df_dtype dt, df_err *err);

#endif

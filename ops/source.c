/*
** source.c -- ops that make tensors: input, param, fill, iota, sinusoid,
** and rand (from a seed input).
*/
#include "ops/ops_impl.h"
#include "compiler/crng.h"

#include <math.h>

/* The shape and dtype are the attributes'. */
SHAPE_FN(df_shape_source) {
  const df_attrs *a = &n->attrs;
  if (a->ndim < 0 || a->ndim > DF_MAX_DIMS)
    return df_err_set(err, DF_EINVAL, "rank %d out of range", a->ndim);
  if ((unsigned)a->dtype >= DF_DTYPE_COUNT)
    return df_err_set(err, DF_EINVAL, "bad dtype");
  if (df_shape_numel(a->ndim, a->shape) < 0) {
    char sb[160];
    return df_err_set(err, DF_ESHAPE, "invalid shape %s",
                      df_shape_str(sb, sizeof sb, a->ndim, a->shape));
  }
  if ((n->op == DF_OP_INPUT || n->op == DF_OP_PARAM) && (!a->str || !a->str[0]))
    return df_err_set(err, DF_EINVAL, "needs a name");
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  for (int i = 0; i < a->ndim; i++) n->shape[i] = a->shape[i];
  return 0;
}

SHAPE_FN(df_shape_iota) {
  int rc = df_shape_source(n, in, err);
  if (rc) return rc;
  if (df_axis(n->attrs.ia[0], n->ndim) < 0)
    return df_err_set(err, DF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)n->attrs.ia[0], n->ndim);
  return 0;
}

SHAPE_FN(df_shape_sinusoid) {
  int rc = df_shape_source(n, in, err);
  if (rc) return rc;
  if (n->ndim != 2 || !df_dtype_is_float(n->dtype))
    return df_err_set(err, DF_EINVAL, "needs a float [positions, width] shape");
  return 0;
}

REF_FN(df_ref_fill) {
  int64_t N = df_node_numel(n);
  double v = n->attrs.fa[0];
  for (int64_t i = 0; i < N; i++) y[i] = v;
  return 0;
}

REF_FN(df_ref_iota) {
  int ax = df_axis(n->attrs.ia[0], n->ndim);
  int64_t st[DF_MAX_DIMS];
  df_strides(n->ndim, n->shape, st);
  int64_t N = df_node_numel(n);
  for (int64_t i = 0; i < N; i++) y[i] = (double)((i / st[ax]) % n->shape[ax]);
  return 0;
}

/*
** The fixed sinusoidal position table of the original:
**   angle(pos, j) = pos / 10000^(2 floor(j/2) / C); even j sin, odd j cos,
** computed in float64 and stored as float32 (torch.FloatTensor), so the
** values are rounded to float32 here too.
*/
REF_FN(df_ref_sinusoid) {
  int64_t P = n->shape[0], C = n->shape[1];
  for (int64_t p = 0; p < P; p++)
    for (int64_t j = 0; j < C; j++) {
      double ang = (double)p / pow(10000.0, 2.0 * (double)(j / 2) / (double)C);
      y[p * C + j] = (float)((j % 2 == 0) ? sin(ang) : cos(ang));
    }
  return 0;
}

/* rand(seed): a float tensor of the attrs' shape; the seed is an integer
** scalar fed at run time (one per step). */
SHAPE_FN(df_shape_rand) {
  if (in[0]->ndim != 0 || (in[0]->dtype != DF_I64 && in[0]->dtype != DF_I32))
    return df_err_set(err, DF_ESHAPE, "seed must be an integer scalar, got %s of rank %d",
                      df_dtype_lname(in[0]->dtype), in[0]->ndim);
  if (!df_dtype_is_float(n->attrs.dtype))
    return df_err_set(err, DF_ESHAPE, "needs a float dtype");
  if (n->attrs.ndim < 0 || n->attrs.ndim > DF_MAX_DIMS || df_shape_numel(n->attrs.ndim, n->attrs.shape) < 0)
    return df_err_set(err, DF_EINVAL, "invalid shape");
  n->dtype = n->attrs.dtype;
  n->ndim = n->attrs.ndim;
  for (int i = 0; i < n->ndim; i++) n->shape[i] = n->attrs.shape[i];
  return 0;
}

REF_FN(df_ref_rand) {
  uint64_t seed = (uint64_t)(int64_t)x[0][0], salt = (uint64_t)n->attrs.ia[0];
  int64_t N = df_node_numel(n);
  for (int64_t i = 0; i < N; i++) y[i] = df_crng_u01(seed, salt, (uint64_t)i);
  return 0;
}

/*
** elementwise.c -- unary math, cast, broadcasting binary ops, comparisons
** and where.
**
** Binary ops take two tensors of the same dtype (no implicit promotion:
** the front end makes scalar constants in the tensor's dtype) and
** broadcast them numpy-style; comparisons give bool.
*/
#include "ops/ops_impl.h"

#include <math.h>

SHAPE_FN(df_shape_unary_float) {
  if (!df_dtype_is_float(in[0]->dtype))
    return df_err_set(err, DF_ESHAPE, "needs a float tensor, got %s",
                      df_dtype_lname(in[0]->dtype));
  n->dtype = in[0]->dtype;
  n->ndim = in[0]->ndim;
  for (int i = 0; i < n->ndim; i++) n->shape[i] = in[0]->shape[i];
  return 0;
}

SHAPE_FN(df_shape_cast) {
  if ((unsigned)n->attrs.dtype >= DF_DTYPE_COUNT)
    return df_err_set(err, DF_EINVAL, "bad target dtype");
  n->dtype = n->attrs.dtype;
  n->ndim = in[0]->ndim;
  for (int i = 0; i < n->ndim; i++) n->shape[i] = in[0]->shape[i];
  return 0;
}

SHAPE_FN(df_shape_binary) {
  if (in[0]->dtype != in[1]->dtype)
    return df_err_set(err, DF_ESHAPE, "dtypes differ: %s and %s",
                      df_dtype_lname(in[0]->dtype), df_dtype_lname(in[1]->dtype));
  n->dtype = in[0]->dtype;
  return df_broadcast(in[0]->ndim, in[0]->shape, in[1]->ndim, in[1]->shape, &n->ndim,
                      n->shape, err);
}

SHAPE_FN(df_shape_compare) {
  int rc = df_shape_binary(n, in, err);
  n->dtype = DF_BOOL;
  return rc;
}

SHAPE_FN(df_shape_where) {
  if (in[0]->dtype != DF_BOOL)
    return df_err_set(err, DF_ESHAPE, "condition must be bool, got %s",
                      df_dtype_lname(in[0]->dtype));
  if (in[1]->dtype != in[2]->dtype)
    return df_err_set(err, DF_ESHAPE, "dtypes differ: %s and %s",
                      df_dtype_lname(in[1]->dtype), df_dtype_lname(in[2]->dtype));
  int nd;
  int64_t sh[DF_MAX_DIMS];
  int rc = df_broadcast(in[0]->ndim, in[0]->shape, in[1]->ndim, in[1]->shape, &nd, sh, err);
  if (rc) return rc;
  rc = df_broadcast(nd, sh, in[2]->ndim, in[2]->shape, &n->ndim, n->shape, err);
  n->dtype = in[1]->dtype;
  return rc;
}

/* Round a float64 value to what `t` can hold (integers truncate toward
** zero).  Only an explicit cast rounds: every other ref kernel keeps full
** float64 precision, since ref is the oracle. */
static double to_dtype(df_dtype t, double v) {
  switch (t) {
  case DF_F32: return (float)v;
  case DF_F16: return df_f16_to_f32(df_f32_to_f16((float)v));
  case DF_BF16: return df_bf16_to_f32(df_f32_to_bf16((float)v));
  case DF_I64: case DF_I32: case DF_U8: return isfinite(v) ? trunc(v) : 0.0;
  case DF_BOOL: return v != 0.0;
  default: return v;
  }
}

REF_FN(df_ref_unary) {
  int64_t N = df_node_numel(n);
  const double *a = x[0];
  for (int64_t i = 0; i < N; i++) {
    double v = a[i], r;
    switch (n->op) {
    case DF_OP_NEG: r = -v; break;
    case DF_OP_EXP: r = exp(v); break;
    case DF_OP_LOG: r = log(v); break;
    case DF_OP_SQRT: r = sqrt(v); break;
    case DF_OP_RSQRT: r = 1.0 / sqrt(v); break;
    case DF_OP_TANH: r = tanh(v); break;
    case DF_OP_ERF: r = erf(v); break;
    case DF_OP_ABS: r = fabs(v); break;
    case DF_OP_RECIP: r = 1.0 / v; break;
    default: return df_err_set(err, DF_EUNSUPPORTED, "not a unary op");
    }
    y[i] = r;
  }
  return 0;
}

/* ref computes in float64 throughout; a cast to a narrower float or an
** integer rounds the values as that dtype would hold them. */
REF_FN(df_ref_cast) {
  int64_t N = df_node_numel(n);
  for (int64_t i = 0; i < N; i++) y[i] = to_dtype(n->dtype, x[0][i]);
  return 0;
}

static double binop(df_op op, double a, double b, int is_int) {
  switch (op) {
  case DF_OP_ADD: return a + b;
  case DF_OP_SUB: return a - b;
  case DF_OP_MUL: return a * b;
  case DF_OP_DIV: return is_int ? (b != 0 ? trunc(a / b) : 0) : a / b;
  case DF_OP_MAX: return (a > b || isnan(a)) ? a : b;
  case DF_OP_MIN: return (a < b || isnan(a)) ? a : b;
  case DF_OP_POW: return pow(a, b);
  case DF_OP_EQ: return a == b;
  case DF_OP_NE: return a != b;
  case DF_OP_LT: return a < b;
  case DF_OP_LE: return a <= b;
  case DF_OP_GT: return a > b;
  case DF_OP_GE: return a >= b;
  default: return 0;
  }
}

/*
** Walk the output in row-major order keeping one offset per input; the
** innermost dim is a tight loop.
*/
REF_FN(df_ref_binary) {
  int nd = n->ndim;
  int64_t sa[DF_MAX_DIMS], sb[DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0};
  df_broadcast_strides(in[0]->ndim, in[0]->shape, nd, n->shape, sa);
  df_broadcast_strides(in[1]->ndim, in[1]->shape, nd, n->shape, sb);
  int64_t N = df_node_numel(n);
  if (N == 0) return 0;
  int is_int = !df_dtype_is_float(in[0]->dtype);
  int64_t inner = nd ? n->shape[nd - 1] : 1;
  int64_t ia = nd ? sa[nd - 1] : 0, ib = nd ? sb[nd - 1] : 0;
  int64_t oa = 0, ob = 0;
  for (int64_t o = 0; o < N; o += inner) {
    for (int64_t j = 0; j < inner; j++)
      y[o + j] = binop(n->op, x[0][oa + j * ia], x[1][ob + j * ib], is_int);
    for (int d = nd - 2; d >= 0; d--) { /* advance the outer counters */
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < n->shape[d]) break;
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return 0;
}

REF_FN(df_ref_where) {
  int nd = n->ndim;
  int64_t s[3][DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0}, off[3] = {0, 0, 0};
  for (int k = 0; k < 3; k++)
    df_broadcast_strides(in[k]->ndim, in[k]->shape, nd, n->shape, s[k]);
  int64_t N = df_node_numel(n);
  for (int64_t o = 0; o < N; o++) {
    y[o] = x[0][off[0]] != 0.0 ? x[1][off[1]] : x[2][off[2]];
    for (int d = nd - 1; d >= 0; d--) {
      idx[d]++;
      for (int k = 0; k < 3; k++) off[k] += s[k][d];
      if (idx[d] < n->shape[d]) break;
      for (int k = 0; k < 3; k++) off[k] -= s[k][d] * idx[d];
      idx[d] = 0;
    }
  }
  return 0;
}

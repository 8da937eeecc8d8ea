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
    case DF_OP_GELU: r = 0.5 * v * (1.0 + erf(v * 0.70710678118654752440)); break;
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

/* ------------------------------------------------------------ gradients */

/* d/dx of the unary ops, from x and y = f(x). */
GRAD_FN(df_grad_unary) {
  df_node n = df_b_node(b, node);
  df_node_id x = n.inputs[0], y = node, g;
  df_dtype dt = n.dtype;
#define S(v) df_b_scalar(b, (v), dt)
#define MUL(p, q) df_b_binary(b, DF_OP_MUL, (p), (q))
  switch (n.op) {
  case DF_OP_NEG: g = df_b_unary(b, DF_OP_NEG, gy); break;
  case DF_OP_EXP: g = MUL(gy, y); break;
  case DF_OP_LOG: g = df_b_binary(b, DF_OP_DIV, gy, x); break;
  case DF_OP_SQRT: g = df_b_binary(b, DF_OP_DIV, MUL(gy, S(0.5)), y); break;
  case DF_OP_RSQRT: g = MUL(MUL(gy, S(-0.5)), MUL(y, MUL(y, y))); break;
  case DF_OP_TANH: g = MUL(gy, df_b_binary(b, DF_OP_SUB, S(1.0), MUL(y, y))); break;
  case DF_OP_ERF: /* 2/sqrt(pi) exp(-x^2) */
    g = MUL(MUL(gy, S(1.1283791670955126)), df_b_unary(b, DF_OP_EXP, df_b_unary(b, DF_OP_NEG, MUL(x, x))));
    break;
  case DF_OP_GELU: { /* Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi) */
    df_node_id cdf = MUL(S(0.5), df_b_binary(b, DF_OP_ADD, S(1.0),
                                             df_b_unary(b, DF_OP_ERF, MUL(x, S(0.70710678118654752440)))));
    df_node_id pdf = MUL(S(0.39894228040143267794), df_b_unary(b, DF_OP_EXP, MUL(MUL(x, x), S(-0.5))));
    g = MUL(gy, df_b_binary(b, DF_OP_ADD, cdf, MUL(x, pdf)));
    break;
  }
  case DF_OP_ABS: { /* sign(x): 1, -1, or 0 at 0 */
    df_node_id pos = df_b_binary(b, DF_OP_GT, x, S(0.0)), neg = df_b_binary(b, DF_OP_LT, x, S(0.0));
    df_node_id sgn = df_b_where(b, pos, S(1.0), df_b_where(b, neg, S(-1.0), S(0.0)));
    g = MUL(gy, sgn);
    break;
  }
  case DF_OP_RECIP: g = df_b_unary(b, DF_OP_NEG, MUL(gy, MUL(y, y))); break;
  default: return df_err_set(b->err, DF_EUNSUPPORTED, "no gradient rule");
  }
#undef S
#undef MUL
  gx[0] = g;
  return df_grad_status(b);
}

/* A cast between float dtypes passes the gradient back in the input's dtype. */
GRAD_FN(df_grad_cast) {
  df_node n = df_b_node(b, node);
  df_node in = df_b_node(b, n.inputs[0]);
  if (df_dtype_is_float(in.dtype) && df_dtype_is_float(n.dtype))
    gx[0] = in.dtype == n.dtype ? gy : df_b_cast(b, gy, in.dtype);
  return df_grad_status(b);
}

GRAD_FN(df_grad_binary) {
  df_node n = df_b_node(b, node);
  df_node_id x = n.inputs[0], y = n.inputs[1], ga, gb;
  df_node nx = df_b_node(b, x), ny = df_b_node(b, y);
  df_dtype dt = n.dtype;
  if (!df_dtype_is_float(dt)) return 0;
#define MUL(p, q) df_b_binary(b, DF_OP_MUL, (p), (q))
#define DIV(p, q) df_b_binary(b, DF_OP_DIV, (p), (q))
  switch (n.op) {
  case DF_OP_ADD: ga = gy; gb = gy; break;
  case DF_OP_SUB: ga = gy; gb = df_b_unary(b, DF_OP_NEG, gy); break;
  case DF_OP_MUL: ga = MUL(gy, y); gb = MUL(gy, x); break;
  case DF_OP_DIV:
    ga = DIV(gy, y);
    gb = df_b_unary(b, DF_OP_NEG, DIV(MUL(gy, node), y)); /* -gy x / y^2 = -gy (x/y) / y */
    break;
  case DF_OP_MAX:
  case DF_OP_MIN: { /* to the selected input; ties go to the first */
    df_node_id pick = df_b_binary(b, n.op == DF_OP_MAX ? DF_OP_GE : DF_OP_LE, x, y);
    df_node_id z = df_b_scalar(b, 0.0, dt);
    ga = df_b_where(b, pick, gy, z);
    gb = df_b_where(b, pick, z, gy);
    break;
  }
  case DF_OP_POW: /* d/dx = y x^(y-1), d/dy = log(x) x^y */
    ga = MUL(MUL(gy, y), df_b_binary(b, DF_OP_POW, x, df_b_binary(b, DF_OP_SUB, y, df_b_scalar(b, 1.0, dt))));
    gb = MUL(MUL(gy, node), df_b_unary(b, DF_OP_LOG, x));
    break;
  default: return df_err_set(b->err, DF_EUNSUPPORTED, "no gradient rule");
  }
#undef MUL
#undef DIV
  gx[0] = df_b_unbroadcast(b, ga, nx.ndim, nx.shape);
  gx[1] = df_b_unbroadcast(b, gb, ny.ndim, ny.shape);
  return df_grad_status(b);
}

GRAD_FN(df_grad_where) {
  df_node n = df_b_node(b, node);
  df_node na = df_b_node(b, n.inputs[1]), nb = df_b_node(b, n.inputs[2]);
  if (!df_dtype_is_float(n.dtype)) return 0;
  df_node_id z = df_b_scalar(b, 0.0, n.dtype);
  gx[1] = df_b_unbroadcast(b, df_b_where(b, n.inputs[0], gy, z), na.ndim, na.shape);
  gx[2] = df_b_unbroadcast(b, df_b_where(b, n.inputs[0], z, gy), nb.ndim, nb.shape);
  return df_grad_status(b);
}

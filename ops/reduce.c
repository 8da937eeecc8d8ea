/*
** reduce.c -- sum, mean, amax and var over a set of axes (ia[0], a
** bitmask), keeping the reduced dims as size 1 when ia[1] is set.
** var divides by (count - ia[2]): ia[2] = 1 is the unbiased estimate.
*/
#include "ops/ops_impl.h"

#include <math.h>
#include <stdlib.h>

SHAPE_FN(df_shape_reduce) {
  const df_node *a = in[0];
  int64_t mask = n->attrs.ia[0];
  if (mask & ~((((int64_t)1) << a->ndim) - 1))
    return df_err_set(err, DF_EINVAL, "axes out of range for rank %d", a->ndim);
  if (n->op != DF_OP_SUM && n->op != DF_OP_AMAX && !df_dtype_is_float(a->dtype))
    return df_err_set(err, DF_ESHAPE, "needs a float tensor, got %s", df_dtype_lname(a->dtype));
  int keep = n->attrs.ia[1] != 0, nd = 0;
  for (int i = 0; i < a->ndim; i++) {
    if (mask >> i & 1) {
      if (keep) n->shape[nd++] = 1;
    } else {
      n->shape[nd++] = a->shape[i];
    }
  }
  n->ndim = nd;
  /* counting bools or bytes gives an integer count */
  n->dtype = (n->op == DF_OP_SUM && (a->dtype == DF_BOOL || a->dtype == DF_U8)) ? DF_I64 : a->dtype;
  return 0;
}

/* Walk the input in row-major order; out is the offset of the output
** element each input element folds into. */
#define WALK_BEGIN                                                           \
  {                                                                          \
    int64_t idx_[DF_MAX_DIMS] = {0}, out = 0;                                \
    for (int64_t i = 0; i < NI; i++) {
#define WALK_END                                                             \
  for (int d = a->ndim - 1; d >= 0; d--) {                                   \
    idx_[d]++;                                                               \
    out += os[d];                                                            \
    if (idx_[d] < a->shape[d]) break;                                        \
    out -= os[d] * idx_[d];                                                  \
    idx_[d] = 0;                                                             \
  }                                                                          \
  }                                                                          \
  }

REF_FN(df_ref_reduce) {
  const df_node *a = in[0];
  int64_t mask = n->attrs.ia[0];
  /* output strides seen from the input's dims: 0 on reduced dims */
  int64_t kept[DF_MAX_DIMS], ks[DF_MAX_DIMS], os[DF_MAX_DIMS];
  int nk = 0;
  for (int i = 0; i < a->ndim; i++)
    if (!(mask >> i & 1)) kept[nk++] = a->shape[i];
  df_strides(nk, kept, ks);
  for (int i = 0, k = 0; i < a->ndim; i++) os[i] = (mask >> i & 1) ? 0 : ks[k++];
  int64_t NI = df_node_numel(a), NO = df_node_numel(n);
  int64_t count = NO ? NI / NO : 0;
  const double *xa = x[0];
  if (n->op == DF_OP_AMAX) {
    for (int64_t o = 0; o < NO; o++) y[o] = -INFINITY;
    WALK_BEGIN
      if (xa[i] > y[out] || isnan(xa[i])) y[out] = xa[i];
    WALK_END
    return 0;
  }
  for (int64_t o = 0; o < NO; o++) y[o] = 0.0;
  WALK_BEGIN
    y[out] += xa[i];
  WALK_END
  if (n->op == DF_OP_SUM) return 0;
  for (int64_t o = 0; o < NO; o++) y[o] /= (double)count;
  if (n->op == DF_OP_MEAN) return 0;
  /* var: second pass around the mean */
  double *m = malloc((size_t)(NO ? NO : 1) * sizeof *m);
  if (!m) return df_err_set(err, DF_ENOMEM, "out of memory");
  for (int64_t o = 0; o < NO; o++) {
    m[o] = y[o];
    y[o] = 0.0;
  }
  WALK_BEGIN
    double d = xa[i] - m[out];
    y[out] += d * d;
  WALK_END
  free(m);
  double div = (double)(count - n->attrs.ia[2]);
  for (int64_t o = 0; o < NO; o++) y[o] = div > 0 ? y[o] / div : NAN;
  return 0;
}

/*
** The gradient flows back to every reduced element: expanded for sum,
** divided by the count for mean, to the maxima (shared among ties) for
** amax, and 2 (x - mean) / (count - correction) for var.
*/
GRAD_FN(df_grad_reduce) {
  df_node n = df_b_node(b, node);
  df_node_id x = n.inputs[0];
  df_node nx = df_b_node(b, x);
  if (!df_dtype_is_float(n.dtype)) return 0;
  int64_t mask = n.attrs.ia[0], kept[DF_MAX_DIMS], count = 1;
  for (int i = 0; i < nx.ndim; i++) {
    kept[i] = (mask >> i & 1) ? 1 : nx.shape[i];
    if (mask >> i & 1) count *= nx.shape[i];
  }
  df_node_id g = df_b_expand(b, df_b_reshape(b, gy, nx.ndim, kept), nx.ndim, nx.shape);
  df_dtype dt = n.dtype;
  switch (n.op) {
  case DF_OP_SUM: break;
  case DF_OP_MEAN: g = df_b_binary(b, DF_OP_MUL, g, df_b_scalar(b, 1.0 / (double)count, dt)); break;
  case DF_OP_AMAX: {
    df_node_id y = df_b_reshape(b, node, nx.ndim, kept);
    df_node_id hit = df_b_cast(b, df_b_binary(b, DF_OP_EQ, x, y), dt);
    df_node_id ties = df_b_reduce(b, DF_OP_SUM, hit, mask, 1, 0);
    g = df_b_binary(b, DF_OP_MUL, g, df_b_binary(b, DF_OP_DIV, hit, ties));
    break;
  }
  case DF_OP_VAR: {
    df_node_id mu = df_b_reduce(b, DF_OP_MEAN, x, mask, 1, 0);
    double k = 2.0 / (double)(count - n.attrs.ia[2]);
    g = df_b_binary(b, DF_OP_MUL, g,
                    df_b_binary(b, DF_OP_MUL, df_b_binary(b, DF_OP_SUB, x, mu), df_b_scalar(b, k, dt)));
    break;
  }
  default: return df_err_set(b->err, DF_EUNSUPPORTED, "no gradient rule");
  }
  gx[0] = g;
  return df_grad_status(b);
}

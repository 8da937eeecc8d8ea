/*
** norm.c -- softmax, log_softmax (over one axis) and layer norm (over the
** last dim, biased variance, eps in fa[0]).
*/
#include "ops/ops_impl.h"

#include <math.h>

SHAPE_FN(df_shape_axis_float) {
  const df_node *a = in[0];
  if (!df_dtype_is_float(a->dtype))
    return df_err_set(err, DF_ESHAPE, "needs a float tensor, got %s", df_dtype_lname(a->dtype));
  if (df_axis(n->attrs.ia[0], a->ndim) < 0)
    return df_err_set(err, DF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)n->attrs.ia[0], a->ndim);
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  for (int i = 0; i < a->ndim; i++) n->shape[i] = a->shape[i];
  return 0;
}

SHAPE_FN(df_shape_layernorm) {
  const df_node *a = in[0];
  char sa[160], sw[160], sb[160];
  if (!df_dtype_is_float(a->dtype) || a->ndim < 1)
    return df_err_set(err, DF_ESHAPE, "needs a float tensor of rank >= 1");
  int64_t C = a->shape[a->ndim - 1];
  for (int k = 1; k < 3; k++)
    if (in[k]->ndim != 1 || in[k]->shape[0] != C || in[k]->dtype != a->dtype)
      return df_err_set(err, DF_ESHAPE, "x %s, weight %s, bias %s: weight and bias must be [%lld] %s",
                        df_node_shape_str(a, sa, sizeof sa), df_node_shape_str(in[1], sw, sizeof sw),
                        df_node_shape_str(in[2], sb, sizeof sb), (long long)C,
                        df_dtype_lname(a->dtype));
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  for (int i = 0; i < a->ndim; i++) n->shape[i] = a->shape[i];
  return 0;
}

REF_FN(df_ref_softmax) {
  int ax = df_axis(n->attrs.ia[0], n->ndim);
  int64_t L = n->shape[ax], inner = 1, outer = 1;
  for (int i = ax + 1; i < n->ndim; i++) inner *= n->shape[i];
  for (int i = 0; i < ax; i++) outer *= n->shape[i];
  int logv = n->op == DF_OP_LOG_SOFTMAX;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in_ = 0; in_ < inner; in_++) {
      const double *a = x[0] + o * L * inner + in_;
      double *r = y + o * L * inner + in_;
      double mx = -INFINITY, s = 0.0;
      for (int64_t l = 0; l < L; l++) mx = fmax(mx, a[l * inner]);
      for (int64_t l = 0; l < L; l++) s += exp(a[l * inner] - mx);
      for (int64_t l = 0; l < L; l++)
        r[l * inner] = logv ? a[l * inner] - mx - log(s) : exp(a[l * inner] - mx) / s;
    }
  return 0;
}

REF_FN(df_ref_layernorm) {
  int64_t C = n->shape[n->ndim - 1], rows = C ? df_node_numel(n) / C : 0;
  double eps = n->attrs.fa[0];
  for (int64_t r = 0; r < rows; r++) {
    const double *a = x[0] + r * C;
    double mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < C; c++) mean += a[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (a[c] - mean) * (a[c] - mean);
    var /= (double)C;
    double rs = 1.0 / sqrt(var + eps);
    for (int64_t c = 0; c < C; c++) y[r * C + c] = (a[c] - mean) * rs * x[1][c] + x[2][c];
  }
  return 0;
}

/*
** softmax:     gx = y (gy - sum(gy y))
** log_softmax: gx = gy - exp(y) sum(gy)       (sums over the axis)
*/
GRAD_FN(df_grad_softmax) {
  df_node n = df_b_node(b, node);
  int ax = df_axis(n.attrs.ia[0], n.ndim);
  int64_t m = (int64_t)1 << ax;
  if (n.op == DF_OP_SOFTMAX) {
    df_node_id s = df_b_reduce(b, DF_OP_SUM, df_b_binary(b, DF_OP_MUL, gy, node), m, 1, 0);
    gx[0] = df_b_binary(b, DF_OP_MUL, node, df_b_binary(b, DF_OP_SUB, gy, s));
  } else {
    df_node_id s = df_b_reduce(b, DF_OP_SUM, gy, m, 1, 0);
    gx[0] = df_b_binary(b, DF_OP_SUB, gy,
                        df_b_binary(b, DF_OP_MUL, df_b_unary(b, DF_OP_EXP, node), s));
  }
  return df_grad_status(b);
}

/*
** y = xh w + b with xh = (x - mean) r, r = 1 / sqrt(var + eps) (biased):
**   gw = sum_rows gy xh,  gb = sum_rows gy,
**   gx = r (g - mean(g) - xh mean(g xh)),  g = gy w   (means over the row)
*/
GRAD_FN(df_grad_layernorm) {
  df_node n = df_b_node(b, node);
  df_node_id x = n.inputs[0], w = n.inputs[1];
  df_dtype dt = n.dtype;
  int last = n.ndim - 1;
  int64_t lm = (int64_t)1 << last, rows = 0;
  for (int i = 0; i < last; i++) rows |= (int64_t)1 << i;
  df_node_id mu = df_b_reduce(b, DF_OP_MEAN, x, lm, 1, 0);
  df_node_id xc = df_b_binary(b, DF_OP_SUB, x, mu);
  df_node_id var = df_b_reduce(b, DF_OP_MEAN, df_b_binary(b, DF_OP_MUL, xc, xc), lm, 1, 0);
  df_node_id r = df_b_unary(b, DF_OP_RSQRT, df_b_binary(b, DF_OP_ADD, var, df_b_scalar(b, n.attrs.fa[0], dt)));
  df_node_id xh = df_b_binary(b, DF_OP_MUL, xc, r);
  df_node_id g = df_b_binary(b, DF_OP_MUL, gy, w);
  df_node_id mg = df_b_reduce(b, DF_OP_MEAN, g, lm, 1, 0);
  df_node_id mgx = df_b_reduce(b, DF_OP_MEAN, df_b_binary(b, DF_OP_MUL, g, xh), lm, 1, 0);
  df_node_id inner = df_b_binary(b, DF_OP_SUB, df_b_binary(b, DF_OP_SUB, g, mg),
                                 df_b_binary(b, DF_OP_MUL, xh, mgx));
  gx[0] = df_b_binary(b, DF_OP_MUL, r, inner);
  df_node_id gwx = df_b_binary(b, DF_OP_MUL, gy, xh);
  gx[1] = rows ? df_b_reduce(b, DF_OP_SUM, gwx, rows, 0, 0) : gwx;
  gx[2] = rows ? df_b_reduce(b, DF_OP_SUM, gy, rows, 0, 0) : gy;
  return df_grad_status(b);
}

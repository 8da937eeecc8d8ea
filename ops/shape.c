/*
** shape.c -- layout ops: reshape (same elements, new shape; -1 is not
** resolved here, the front end does that), expand (broadcast to a larger
** shape), permute, slice (one axis, with a positive step) and concat.
*/
#include "ops/ops_impl.h"

#include <string.h>

SHAPE_FN(df_shape_reshape) {
  const df_node *a = in[0];
  char sa[160], sb[160];
  int bad_rank = n->attrs.ndim < 0 || n->attrs.ndim > DF_MAX_DIMS;
  int64_t want = bad_rank ? -1 : df_shape_numel(n->attrs.ndim, n->attrs.shape);
  if (bad_rank || want != df_node_numel(a))
    return df_err_set(err, DF_ESHAPE, "cannot reshape %s (%lld elements) to %s",
                      df_node_shape_str(a, sa, sizeof sa), (long long)df_node_numel(a),
                      df_shape_str(sb, sizeof sb, bad_rank ? 0 : n->attrs.ndim, n->attrs.shape));
  n->dtype = a->dtype;
  n->ndim = n->attrs.ndim;
  memcpy(n->shape, n->attrs.shape, sizeof n->shape);
  return 0;
}

SHAPE_FN(df_shape_expand) {
  const df_node *a = in[0];
  char sa[160], sb[160];
  int nd = n->attrs.ndim;
  int ok = nd >= a->ndim && nd <= DF_MAX_DIMS;
  for (int i = 0; ok && i < a->ndim; i++) {
    int64_t d = a->shape[i], t = n->attrs.shape[nd - a->ndim + i];
    ok = d == t || d == 1;
  }
  if (!ok || df_shape_numel(nd, n->attrs.shape) < 0)
    return df_err_set(err, DF_ESHAPE, "cannot expand %s to %s",
                      df_node_shape_str(a, sa, sizeof sa),
                      df_shape_str(sb, sizeof sb, nd, n->attrs.shape));
  n->dtype = a->dtype;
  n->ndim = nd;
  memcpy(n->shape, n->attrs.shape, sizeof n->shape);
  return 0;
}

SHAPE_FN(df_shape_permute) {
  const df_node *a = in[0];
  int seen[DF_MAX_DIMS] = {0};
  if (n->attrs.nia != a->ndim)
    return df_err_set(err, DF_EINVAL, "permutation of %d axes for a rank-%d tensor",
                      n->attrs.nia, a->ndim);
  for (int i = 0; i < a->ndim; i++) {
    int64_t p = n->attrs.ia[i];
    if (p < 0 || p >= a->ndim || seen[p]++)
      return df_err_set(err, DF_EINVAL, "not a permutation of 0..%d", a->ndim - 1);
    n->shape[i] = a->shape[p];
  }
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  return 0;
}

SHAPE_FN(df_shape_slice) {
  const df_node *a = in[0];
  int ax = df_axis(n->attrs.ia[0], a->ndim);
  int64_t s = n->attrs.ia[1], e = n->attrs.ia[2], st = n->attrs.ia[3];
  if (ax < 0)
    return df_err_set(err, DF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)n->attrs.ia[0], a->ndim);
  if (st < 1 || s < 0 || e < s || e > a->shape[ax])
    return df_err_set(err, DF_EINVAL, "range %lld:%lld:%lld out of bounds for size %lld on axis %d",
                      (long long)s, (long long)e, (long long)st, (long long)a->shape[ax], ax);
  n->attrs.ia[0] = ax;
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  memcpy(n->shape, a->shape, sizeof n->shape);
  n->shape[ax] = (e - s + st - 1) / st;
  return 0;
}

SHAPE_FN(df_shape_concat) {
  const df_node *a = in[0];
  int ax = df_axis(n->attrs.ia[0], a->ndim);
  if (ax < 0)
    return df_err_set(err, DF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)n->attrs.ia[0], a->ndim);
  n->attrs.ia[0] = ax;
  int64_t total = 0;
  for (int k = 0; k < n->ninputs; k++) {
    const df_node *b = in[k];
    int ok = b->ndim == a->ndim && b->dtype == a->dtype;
    for (int i = 0; ok && i < a->ndim; i++) ok = i == ax || b->shape[i] == a->shape[i];
    if (!ok) {
      char sa[160], sb[160];
      return df_err_set(err, DF_ESHAPE, "input %d %s %s does not fit input 1 %s %s on axis %d",
                        k + 1, df_node_shape_str(b, sb, sizeof sb), df_dtype_lname(b->dtype),
                        df_node_shape_str(a, sa, sizeof sa), df_dtype_lname(a->dtype), ax);
    }
    total += b->shape[ax];
  }
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  memcpy(n->shape, a->shape, sizeof n->shape);
  n->shape[ax] = total;
  return 0;
}

REF_FN(df_ref_copy) {
  memcpy(y, x[0], (size_t)df_node_numel(n) * sizeof *y);
  return 0;
}

/* Gather through per-output-dim input strides (0 = broadcast). */
static void strided_copy(const df_node *n, const int64_t *st, int64_t base, const double *a,
                         double *y) {
  int nd = n->ndim;
  int64_t idx[DF_MAX_DIMS] = {0}, off = base, N = df_node_numel(n);
  for (int64_t o = 0; o < N; o++) {
    y[o] = a[off];
    for (int d = nd - 1; d >= 0; d--) {
      idx[d]++;
      off += st[d];
      if (idx[d] < n->shape[d]) break;
      off -= st[d] * idx[d];
      idx[d] = 0;
    }
  }
}

REF_FN(df_ref_expand) {
  int64_t st[DF_MAX_DIMS];
  df_broadcast_strides(in[0]->ndim, in[0]->shape, n->ndim, n->shape, st);
  strided_copy(n, st, 0, x[0], y);
  return 0;
}

REF_FN(df_ref_permute) {
  int64_t s[DF_MAX_DIMS], st[DF_MAX_DIMS];
  df_strides(in[0]->ndim, in[0]->shape, s);
  for (int i = 0; i < n->ndim; i++) st[i] = s[n->attrs.ia[i]];
  strided_copy(n, st, 0, x[0], y);
  return 0;
}

REF_FN(df_ref_slice) {
  int ax = (int)n->attrs.ia[0];
  int64_t st[DF_MAX_DIMS];
  df_strides(in[0]->ndim, in[0]->shape, st);
  int64_t base = n->attrs.ia[1] * st[ax];
  st[ax] *= n->attrs.ia[3];
  strided_copy(n, st, base, x[0], y);
  return 0;
}

REF_FN(df_ref_concat) {
  int ax = (int)n->attrs.ia[0];
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; i++) outer *= n->shape[i];
  for (int i = ax + 1; i < n->ndim; i++) inner *= n->shape[i];
  int64_t row = n->shape[ax] * inner, off = 0;
  for (int k = 0; k < n->ninputs; k++) {
    int64_t chunk = in[k]->shape[ax] * inner;
    for (int64_t o = 0; o < outer; o++)
      memcpy(y + o * row + off, x[k] + o * chunk, (size_t)chunk * sizeof *y);
    off += chunk;
  }
  return 0;
}

/* pad: zeros before and after the input along one axis. */
SHAPE_FN(df_shape_pad) {
  const df_node *a = in[0];
  int ax = df_axis(n->attrs.ia[0], a->ndim);
  if (ax < 0 || n->attrs.ia[1] < 0 || n->attrs.ia[2] < 0)
    return df_err_set(err, DF_EINVAL, "bad axis or negative padding");
  n->attrs.ia[0] = ax;
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  memcpy(n->shape, a->shape, sizeof n->shape);
  n->shape[ax] += n->attrs.ia[1] + n->attrs.ia[2];
  return 0;
}

REF_FN(df_ref_pad) {
  int ax = (int)n->attrs.ia[0];
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; i++) outer *= n->shape[i];
  for (int i = ax + 1; i < n->ndim; i++) inner *= n->shape[i];
  int64_t L = in[0]->shape[ax], Lo = n->shape[ax], before = n->attrs.ia[1];
  memset(y, 0, (size_t)df_node_numel(n) * sizeof *y);
  for (int64_t o = 0; o < outer; o++)
    memcpy(y + (o * Lo + before) * inner, x[0] + o * L * inner, (size_t)(L * inner) * sizeof *y);
  return 0;
}

/* ------------------------------------------------------------ gradients */

GRAD_FN(df_grad_reshape) {
  df_node in = df_b_node(b, df_b_node(b, node).inputs[0]);
  gx[0] = df_b_reshape(b, gy, in.ndim, in.shape);
  return df_grad_status(b);
}

GRAD_FN(df_grad_expand) {
  df_node in = df_b_node(b, df_b_node(b, node).inputs[0]);
  gx[0] = df_b_unbroadcast(b, gy, in.ndim, in.shape);
  return df_grad_status(b);
}

GRAD_FN(df_grad_permute) {
  df_node n = df_b_node(b, node);
  int64_t inv[DF_MAX_DIMS];
  for (int i = 0; i < n.ndim; i++) inv[n.attrs.ia[i]] = i;
  gx[0] = df_b_permute(b, gy, inv);
  return df_grad_status(b);
}

/* The gradient of a slice is gy padded with zeros back to the input's
** size; a strided slice (step > 1) has no rule yet. */
GRAD_FN(df_grad_slice) {
  df_node n = df_b_node(b, node);
  df_node in = df_b_node(b, n.inputs[0]);
  int ax = (int)n.attrs.ia[0];
  if (n.attrs.ia[3] != 1)
    return df_err_set(b->err, DF_EUNSUPPORTED, "%s:%d: slice: no gradient for step %lld", n.file,
                      n.line, (long long)n.attrs.ia[3]);
  int64_t s = n.attrs.ia[1], e = n.attrs.ia[2];
  gx[0] = df_b_pad(b, gy, ax, s, in.shape[ax] - e);
  return df_grad_status(b);
}

GRAD_FN(df_grad_concat) {
  df_node n = df_b_node(b, node);
  int ax = (int)n.attrs.ia[0];
  int64_t off = 0;
  for (int k = 0; k < n.ninputs; k++) {
    df_node in = df_b_node(b, n.inputs[k]);
    gx[k] = df_b_slice(b, gy, ax, off, off + in.shape[ax], 1);
    off += in.shape[ax];
  }
  return df_grad_status(b);
}

GRAD_FN(df_grad_pad) {
  df_node n = df_b_node(b, node);
  df_node in = df_b_node(b, n.inputs[0]);
  int ax = (int)n.attrs.ia[0];
  gx[0] = df_b_slice(b, gy, ax, n.attrs.ia[1], n.attrs.ia[1] + in.shape[ax], 1);
  return df_grad_status(b);
}

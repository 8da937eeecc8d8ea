/*
** attention.c -- fused scaled dot-product attention and its gradient.
**
**   attention(q [..., N, d], k [..., M, d], v [..., M, d]), fa[0] = scale:
**     softmax(scale q k^T) v                      -> [..., N, d]
**   attention_grad(q, k, v, o, do), fa[0] = scale: the gradients with
**     respect to q, k and v packed along the rows -> [..., N + 2M, d]
**     (rows 0..N-1: dq; N..N+M-1: dk; N+M..N+2M-1: dv), from
**     P = softmax(scale q k^T) recomputed, D_i = sum_c do_ic o_ic:
**       dv = P^T do,  dS = P * (do v^T - D),  dq = scale dS k,
**       dk = scale dS^T q.
** The batch dims of q, k and v are the same (no broadcasting).  Nothing of
** size N x M outlives a row of queries: the score matrix is never stored,
** which is the point (the kernels of a device compute it a block of rows
** at a time; see runtime/attention_cpu.c).
*/
#include "ops/ops_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

SHAPE_FN(df_shape_attention) {
  char s0[160], s1[160], s2[160];
  int grad = n->op == DF_OP_ATTENTION_GRAD;
  const df_node *q = in[0], *k = in[1], *v = in[2];
  int nd = q->ndim, ok = nd >= 2 && k->ndim == nd && v->ndim == nd && df_dtype_is_float(q->dtype) &&
                         k->dtype == q->dtype && v->dtype == q->dtype;
  for (int i = 0; ok && i < nd - 2; i++) ok = k->shape[i] == q->shape[i] && v->shape[i] == q->shape[i];
  ok = ok && k->shape[nd - 1] == q->shape[nd - 1] && v->shape[nd - 1] == q->shape[nd - 1] &&
       v->shape[nd - 2] == k->shape[nd - 2];
  if (!ok)
    return df_err_set(err, DF_ESHAPE,
                      "q %s, k %s, v %s: needs float [..., N, d], [..., M, d], [..., M, d] of one dtype and batch",
                      df_node_shape_str(q, s0, sizeof s0), df_node_shape_str(k, s1, sizeof s1),
                      df_node_shape_str(v, s2, sizeof s2));
  if (grad)
    for (int j = 3; j < 5; j++)
      if (in[j]->ndim != nd || in[j]->dtype != q->dtype ||
          memcmp(in[j]->shape, q->shape, (size_t)nd * sizeof *q->shape) != 0)
        return df_err_set(err, DF_ESHAPE, "o and do must be shaped as q %s, got %s",
                          df_node_shape_str(q, s0, sizeof s0), df_node_shape_str(in[j], s1, sizeof s1));
  n->dtype = q->dtype;
  n->ndim = nd;
  for (int i = 0; i < nd; i++) n->shape[i] = q->shape[i];
  if (grad) n->shape[nd - 2] = q->shape[nd - 2] + 2 * k->shape[nd - 2];
  return 0;
}

/* The sizes: batch items, N, M, d. */
static void dims(const df_node *const *in, int64_t *nb, int64_t *N, int64_t *M, int64_t *d) {
  int nd = in[0]->ndim;
  *nb = 1;
  for (int i = 0; i < nd - 2; i++) *nb *= in[0]->shape[i];
  *N = in[0]->shape[nd - 2];
  *M = in[1]->shape[nd - 2];
  *d = in[0]->shape[nd - 1];
}

/* Row i of P = softmax(scale q_i k^T) into p[M]. */
static void prob_row(const double *qi, const double *k, int64_t M, int64_t d, double scale, double *p) {
  double mx = -INFINITY, s = 0;
  for (int64_t j = 0; j < M; j++) {
    double a = 0;
    for (int64_t c = 0; c < d; c++) a += qi[c] * k[j * d + c];
    p[j] = a * scale;
    mx = fmax(mx, p[j]);
  }
  for (int64_t j = 0; j < M; j++) s += (p[j] = exp(p[j] - mx));
  for (int64_t j = 0; j < M; j++) p[j] /= s;
}

REF_FN(df_ref_attention) {
  int64_t nb, N, M, d;
  dims(in, &nb, &N, &M, &d);
  double scale = n->attrs.fa[0];
  double *p = malloc((size_t)(M ? M : 1) * sizeof *p);
  if (!p) return df_err_set(err, DF_ENOMEM, "out of memory");
  for (int64_t b = 0; b < nb; b++) {
    const double *q = x[0] + b * N * d, *k = x[1] + b * M * d, *v = x[2] + b * M * d;
    for (int64_t i = 0; i < N; i++) {
      prob_row(q + i * d, k, M, d, scale, p);
      double *o = y + (b * N + i) * d;
      for (int64_t c = 0; c < d; c++) o[c] = 0;
      for (int64_t j = 0; j < M; j++)
        for (int64_t c = 0; c < d; c++) o[c] += p[j] * v[j * d + c];
    }
  }
  free(p);
  return 0;
}

REF_FN(df_ref_attention_grad) {
  int64_t nb, N, M, d;
  dims(in, &nb, &N, &M, &d);
  double scale = n->attrs.fa[0];
  double *p = malloc((size_t)(2 * M + 1) * sizeof *p), *dp = p + M;
  if (!p) return df_err_set(err, DF_ENOMEM, "out of memory");
  for (int64_t b = 0; b < nb; b++) {
    const double *q = x[0] + b * N * d, *k = x[1] + b * M * d, *v = x[2] + b * M * d;
    const double *o = x[3] + b * N * d, *go = x[4] + b * N * d;
    double *dq = y + b * (N + 2 * M) * d, *dk = dq + N * d, *dv = dk + M * d;
    for (int64_t r = 0; r < (N + 2 * M) * d; r++) dq[r] = 0;
    for (int64_t i = 0; i < N; i++) {
      const double *qi = q + i * d, *gi = go + i * d, *oi = o + i * d;
      prob_row(qi, k, M, d, scale, p);
      double D = 0;
      for (int64_t c = 0; c < d; c++) D += gi[c] * oi[c];
      for (int64_t j = 0; j < M; j++) {
        double a = 0;
        for (int64_t c = 0; c < d; c++) {
          a += gi[c] * v[j * d + c];
          dv[j * d + c] += p[j] * gi[c];
        }
        dp[j] = p[j] * (a - D) * scale;
      }
      for (int64_t j = 0; j < M; j++)
        for (int64_t c = 0; c < d; c++) {
          dq[i * d + c] += dp[j] * k[j * d + c];
          dk[j * d + c] += dp[j] * qi[c];
        }
    }
  }
  free(p);
  return 0;
}

GRAD_FN(df_grad_attention) {
  df_node n = df_b_node(b, node);
  int nd = n.ndim;
  df_node_id in[5] = {n.inputs[0], n.inputs[1], n.inputs[2], node, gy};
  df_attrs a = {0};
  a.nfa = 1;
  a.fa[0] = n.attrs.fa[0];
  df_node_id packed = df_b_op(b, DF_OP_ATTENTION_GRAD, in, 5, &a);
  int64_t N = n.shape[nd - 2], M = df_b_node(b, n.inputs[1]).shape[nd - 2];
  gx[0] = df_b_slice(b, packed, nd - 2, 0, N, 1);
  gx[1] = df_b_slice(b, packed, nd - 2, N, N + M, 1);
  gx[2] = df_b_slice(b, packed, nd - 2, N + M, N + 2 * M, 1);
  return df_grad_status(b);
}

/*
** matmul.c -- batched matrix product with optional transposes.
**
** a [..., M, K] (or [..., K, M] with ia[0]) x b [..., K, N] (or [..., N, K]
** with ia[1]) -> [..., M, N]; the batch dims broadcast.  Both operands
** must be at least 2-D and of one float dtype.
*/
#include "ops/ops_impl.h"

#include <stdlib.h>

SHAPE_FN(df_shape_matmul) {
  const df_node *a = in[0], *b = in[1];
  char sa[160], sb[160];
  df_shape_str(sa, sizeof sa, a->ndim, a->shape);
  df_shape_str(sb, sizeof sb, b->ndim, b->shape);
  if (a->ndim < 2 || b->ndim < 2)
    return df_err_set(err, DF_ESHAPE, "%s x %s: operands must be at least 2-D", sa, sb);
  if (a->dtype != b->dtype || !df_dtype_is_float(a->dtype))
    return df_err_set(err, DF_ESHAPE, "%s x %s: needs one float dtype, got %s and %s", sa,
                      sb, df_dtype_lname(a->dtype), df_dtype_lname(b->dtype));
  int ta = n->attrs.ia[0] != 0, tb = n->attrs.ia[1] != 0;
  int64_t M = a->shape[a->ndim - 2 + ta], Ka = a->shape[a->ndim - 1 - ta];
  int64_t Kb = b->shape[b->ndim - 2 + tb], N = b->shape[b->ndim - 1 - tb];
  if (Ka != Kb)
    return df_err_set(err, DF_ESHAPE, "%s x %s%s: inner sizes differ (%lld vs %lld)", sa,
                      sb, tb ? "^T" : "", (long long)Ka, (long long)Kb);
  int nd;
  int64_t sh[DF_MAX_DIMS];
  df_err e2 = {0};
  if (df_broadcast(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nd, sh, &e2))
    return df_err_set(err, DF_ESHAPE, "%s x %s: batch dims %s", sa, sb, e2.msg);
  n->dtype = a->dtype;
  n->ndim = nd + 2;
  for (int i = 0; i < nd; i++) n->shape[i] = sh[i];
  n->shape[nd] = M;
  n->shape[nd + 1] = N;
  return 0;
}

/*
** One product per batch element: C[i, j] = sum_k A[i, k] B[k, j], with the
** i-k-j loop order over a row-major copy of B so the inner loop is
** contiguous (ref stays simple, but a full-size model must still run).
*/
REF_FN(df_ref_matmul) {
  const df_node *a = in[0], *b = in[1];
  int ta = n->attrs.ia[0] != 0, tb = n->attrs.ia[1] != 0;
  int nb = n->ndim - 2;
  int64_t M = n->shape[nb], N = n->shape[nb + 1];
  int64_t K = a->shape[a->ndim - 1 - ta];
  int64_t sa[DF_MAX_DIMS], sb[DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0};
  /* batch strides in units of whole matrices */
  int64_t amat = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
  int64_t bmat = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
  df_broadcast_strides(a->ndim - 2, a->shape, nb, n->shape, sa);
  df_broadcast_strides(b->ndim - 2, b->shape, nb, n->shape, sb);
  int64_t batches = df_shape_numel(nb, n->shape);
  double *bt = malloc((size_t)(K * N > 0 ? K * N : 1) * sizeof *bt);
  double *at = malloc((size_t)(M * K > 0 ? M * K : 1) * sizeof *at);
  if (!bt || !at) {
    free(bt);
    free(at);
    return df_err_set(err, DF_ENOMEM, "out of memory");
  }
  int64_t oa = 0, ob = 0;
  for (int64_t bi = 0; bi < batches; bi++) {
    const double *A = x[0] + oa * amat, *B = x[1] + ob * bmat;
    /* at = A as [M, K], bt = B as [K, N], both row-major */
    for (int64_t i = 0; i < M; i++)
      for (int64_t k = 0; k < K; k++) at[i * K + k] = ta ? A[k * M + i] : A[i * K + k];
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < N; j++) bt[k * N + j] = tb ? B[j * K + k] : B[k * N + j];
    double *C = y + bi * M * N;
    for (int64_t i = 0; i < M; i++) {
      double *c = C + i * N;
      for (int64_t j = 0; j < N; j++) c[j] = 0.0;
      for (int64_t k = 0; k < K; k++) {
        double av = at[i * K + k];
        const double *br = bt + k * N;
        for (int64_t j = 0; j < N; j++) c[j] += av * br[j];
      }
    }
    for (int d = nb - 1; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < n->shape[d]) break;
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  free(bt);
  free(at);
  return 0;
}

/*
** C = op(A) op(B), op = transpose when the flag is set:
**   d op(A) = gy op(B)^T,   d op(B) = op(A)^T gy,
** written as matmuls with flags; broadcast batch dims are summed back.
*/
GRAD_FN(df_grad_matmul) {
  df_node n = df_b_node(b, node);
  df_node_id A = n.inputs[0], B = n.inputs[1];
  df_node na = df_b_node(b, A), nb = df_b_node(b, B);
  int ta = n.attrs.ia[0] != 0, tb = n.attrs.ia[1] != 0;
  df_node_id ga = ta ? df_b_matmul(b, B, gy, tb, 1) : df_b_matmul(b, gy, B, 0, !tb);
  /* the activation of the weight gradient: recomputed where that is cheap
  ** (df_b_recompute), so the forward's copy need not live until here */
  A = df_b_recompute(b, A);
  df_node_id gb;
  if (nb.ndim == 2 && na.ndim > 2 && !ta) {
    /* a weight shared by every batch (x W^T): the sum over batches of
    ** A^T gy is one product over all rows, [rows, K]^T x [rows, N] */
    int64_t K = na.shape[na.ndim - 1], N = n.shape[n.ndim - 1];
    int64_t rows = df_shape_numel(na.ndim - 1, na.shape);
    int64_t sa[2] = {rows, K}, sg[2] = {rows, N};
    df_node_id A2 = df_b_reshape(b, A, 2, sa), G2 = df_b_reshape(b, gy, 2, sg);
    gb = tb ? df_b_matmul(b, G2, A2, 1, 0) : df_b_matmul(b, A2, G2, 1, 0);
    gx[0] = df_b_unbroadcast(b, ga, na.ndim, na.shape);
    gx[1] = gb;
    return df_grad_status(b);
  }
  gb = tb ? df_b_matmul(b, gy, A, 1, ta) : df_b_matmul(b, A, gy, !ta, 0);
  gx[0] = df_b_unbroadcast(b, ga, na.ndim, na.shape);
  gx[1] = df_b_unbroadcast(b, gb, nb.ndim, nb.shape);
  return df_grad_status(b);
}

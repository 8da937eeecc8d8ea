/*
** index.c -- gather along an axis and mask_index, which turns a boolean
** mask into gather positions inside the graph (so a compiled step takes
** the mask as an ordinary input).
*/
#include "ops/ops_impl.h"

#include <math.h>
#include <string.h>

/*
** gather(x, idx, axis): x [P..., N, S...], idx [Q..., M] with rank(Q) =
** rank(P) and each P dim equal to its Q dim or 1 (broadcast) ->
** [Q..., M, S...]; out[q, m, s] = x[q, idx[q, m], s].
*/
SHAPE_FN(df_shape_gather) {
  const df_node *a = in[0], *ix = in[1];
  char sa[160], si[160];
  int ax = df_axis(n->attrs.ia[0], a->ndim);
  if (ax < 0)
    return df_err_set(err, DF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)n->attrs.ia[0], a->ndim);
  if (ix->dtype != DF_I64 && ix->dtype != DF_I32)
    return df_err_set(err, DF_ESHAPE, "indices must be i64 or i32, got %s",
                      df_dtype_lname(ix->dtype));
  int ok = ix->ndim == ax + 1;
  for (int i = 0; ok && i < ax; i++) ok = a->shape[i] == ix->shape[i] || a->shape[i] == 1;
  if (!ok)
    return df_err_set(err, DF_ESHAPE, "x %s, indices %s: indices must be [leading dims..., M] "
                      "matching x before axis %d", df_node_shape_str(a, sa, sizeof sa),
                      df_node_shape_str(ix, si, sizeof si), ax);
  n->attrs.ia[0] = ax;
  n->dtype = a->dtype;
  n->ndim = a->ndim;
  for (int i = 0; i <= ax; i++) n->shape[i] = ix->shape[i];
  for (int i = ax + 1; i < a->ndim; i++) n->shape[i] = a->shape[i];
  return 0;
}

REF_FN(df_ref_gather) {
  const df_node *a = in[0];
  int ax = (int)n->attrs.ia[0];
  int64_t S = 1, Nx = a->shape[ax], M = n->shape[ax];
  for (int i = ax + 1; i < a->ndim; i++) S *= a->shape[i];
  int64_t Q = df_shape_numel(ax, n->shape);
  int64_t qs[DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0}, qoff = 0;
  df_broadcast_strides(ax, a->shape, ax, n->shape, qs);
  for (int64_t q = 0; q < Q; q++) {
    for (int64_t m = 0; m < M; m++) {
      double p = x[1][q * M + m];
      if (!(p >= 0 && p < (double)Nx) || p != floor(p))
        return df_err_set(err, DF_ERUNTIME, "index %g out of range [0, %lld)", p,
                          (long long)Nx);
      memcpy(y + (q * M + m) * S, x[0] + (qoff * Nx + (int64_t)p) * S, (size_t)S * sizeof *y);
    }
    for (int d = ax - 1; d >= 0; d--) {
      idx[d]++;
      qoff += qs[d];
      if (idx[d] < n->shape[d]) break;
      qoff -= qs[d] * idx[d];
      idx[d] = 0;
    }
  }
  return 0;
}

SHAPE_FN(df_shape_mask_index) {
  const df_node *m = in[0];
  const int64_t *ia = n->attrs.ia;
  char sm[160];
  if (m->ndim != 2 || m->dtype != DF_BOOL)
    return df_err_set(err, DF_ESHAPE, "mask must be [B, N] bool, got %s %s",
                      df_node_shape_str(m, sm, sizeof sm), df_dtype_lname(m->dtype));
  if (ia[1] < 0 || ia[1] > m->shape[1])
    return df_err_set(err, DF_EINVAL, "count %lld out of range for %lld tokens",
                      (long long)ia[1], (long long)m->shape[1]);
  if (ia[2] > 0) {
    int64_t t = ia[2], h = ia[3], w = ia[4], rh = ia[5], rw = ia[6];
    if (t < 1 || h < 1 || w < 1 || rh < 1 || rw < 1 || t * h * w != m->shape[1] || h % rh ||
        w % rw || ia[1] % (t * (h / rh) * (w / rw)))
      return df_err_set(err, DF_EINVAL, "region check %lldx%lldx%lld / %lldx%lld does not fit "
                        "%lld tokens with %lld selected", (long long)t, (long long)h,
                        (long long)w, (long long)rh, (long long)rw, (long long)m->shape[1],
                        (long long)ia[1]);
  }
  n->dtype = DF_I64;
  n->ndim = 2;
  n->shape[0] = m->shape[0];
  n->shape[1] = ia[1];
  return 0;
}

/*
** Positions of the selected value, row by row.  A row with another count
** is a run-time error; with the region check, so is a frame window
** (rh x rw tokens) whose count differs from count / (t * windows): an LGI
** encoder regroups visible tokens assuming that layout (a part-window
** mask guarantees it), and any other mask would be regrouped wrongly.
*/
REF_FN(df_ref_mask_index) {
  const int64_t *ia = n->attrs.ia;
  int64_t B = in[0]->shape[0], N = in[0]->shape[1], M = ia[1];
  double want = (double)ia[0];
  for (int64_t b = 0; b < B; b++) {
    const double *m = x[0] + b * N;
    int64_t c = 0;
    for (int64_t i = 0; i < N; i++)
      if ((m[i] != 0.0) == (want != 0.0)) {
        if (c < M) y[b * M + c] = (double)i;
        c++;
      }
    if (c != M)
      return df_err_set(err, DF_ERUNTIME, "mask row %lld has %lld %s tokens, the graph was "
                        "built for %lld", (long long)b, (long long)c,
                        want != 0.0 ? "masked" : "visible", (long long)M);
    if (ia[2] > 0) {
      int64_t t = ia[2], h = ia[3], w = ia[4], rh = ia[5], rw = ia[6];
      int64_t nwin = (h / rh) * (w / rw), k = M / (t * nwin);
      for (int64_t f = 0; f < t; f++)
        for (int64_t wy = 0; wy < h / rh; wy++)
          for (int64_t wx = 0; wx < w / rw; wx++) {
            int64_t cnt = 0;
            for (int64_t yy = wy * rh; yy < (wy + 1) * rh; yy++)
              for (int64_t xx = wx * rw; xx < (wx + 1) * rw; xx++)
                cnt += (m[(f * h + yy) * w + xx] != 0.0) == (want != 0.0);
            if (cnt != k)
              return df_err_set(err, DF_ERUNTIME,
                                "mask row %lld: frame %lld, window (%lld, %lld) has %lld %s "
                                "tokens but an LGI encoder needs %lld in every %lldx%lld "
                                "window of every frame (use a part-window mask whose window "
                                "is the region's spatial size)", (long long)b, (long long)f,
                                (long long)wy, (long long)wx, (long long)cnt,
                                want != 0.0 ? "masked" : "visible", (long long)k,
                                (long long)rh, (long long)rw);
          }
    }
  }
  return 0;
}

/*
** scatter_add(idx, src): the result (shape attrs) starts at zero and
** out[q', idx[q, m], s] += src[q, m, s], where q' is q with the result's
** size-1 leading dims pinned to 0 (so it also sums what a broadcast
** gather spread).
*/
SHAPE_FN(df_shape_scatter_add) {
  const df_node *ix = in[0], *src = in[1];
  int ax = df_axis(n->attrs.ia[0], n->attrs.ndim);
  char si[160], ss[160], so[160];
  if (ax < 0) return df_err_set(err, DF_EINVAL, "axis out of range");
  int ok = (ix->dtype == DF_I64 || ix->dtype == DF_I32) && ix->ndim == ax + 1 &&
           src->ndim == n->attrs.ndim && df_shape_numel(n->attrs.ndim, n->attrs.shape) >= 0;
  for (int i = 0; ok && i <= ax; i++) ok = src->shape[i] == ix->shape[i];
  for (int i = 0; ok && i < ax; i++) ok = n->attrs.shape[i] == ix->shape[i] || n->attrs.shape[i] == 1;
  for (int i = ax + 1; ok && i < src->ndim; i++) ok = src->shape[i] == n->attrs.shape[i];
  if (!ok)
    return df_err_set(err, DF_ESHAPE, "indices %s, source %s do not scatter into %s on axis %d",
                      df_node_shape_str(ix, si, sizeof si), df_node_shape_str(src, ss, sizeof ss),
                      df_shape_str(so, sizeof so, n->attrs.ndim, n->attrs.shape), ax);
  n->attrs.ia[0] = ax;
  n->dtype = src->dtype;
  n->ndim = n->attrs.ndim;
  memcpy(n->shape, n->attrs.shape, sizeof n->shape);
  return 0;
}

int df_scatter_add_walk(const df_node *n, const df_node *src, double (*index)(const void *ix, int64_t r),
                        const void *ix, void (*add)(void *ctx, int64_t dst, int64_t src, int64_t S), void *ctx,
                        df_err *err) {
  int ax = (int)n->attrs.ia[0];
  int64_t S = 1, No = n->shape[ax], M = src->shape[ax];
  for (int i = ax + 1; i < n->ndim; i++) S *= n->shape[i];
  int64_t Q = df_shape_numel(ax, src->shape);
  int64_t qs[DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0}, qoff = 0;
  df_broadcast_strides(ax, n->shape, ax, src->shape, qs);
  for (int64_t q = 0; q < Q; q++) {
    for (int64_t m = 0; m < M; m++) {
      double p = index(ix, q * M + m);
      if (!(p >= 0 && p < (double)No) || p != floor(p))
        return df_err_set(err, DF_ERUNTIME, "index %g out of range [0, %lld)", p, (long long)No);
      add(ctx, (qoff * No + (int64_t)p) * S, (q * M + m) * S, S);
    }
    for (int d = ax - 1; d >= 0; d--) {
      idx[d]++;
      qoff += qs[d];
      if (idx[d] < src->shape[d]) break;
      qoff -= qs[d] * idx[d];
      idx[d] = 0;
    }
  }
  return 0;
}

static double index_f64(const void *ix, int64_t r) { return ((const double *)ix)[r]; }

typedef struct add_f64 {
  double *y;
  const double *x;
} add_f64;

static void add_rows_f64(void *ctx, int64_t dst, int64_t src, int64_t S) {
  add_f64 *a = ctx;
  for (int64_t k = 0; k < S; k++) a->y[dst + k] += a->x[src + k];
}

REF_FN(df_ref_scatter_add) {
  add_f64 a = {y, x[1]};
  memset(y, 0, (size_t)df_node_numel(n) * sizeof *y);
  return df_scatter_add_walk(n, in[1], index_f64, x[0], add_rows_f64, &a, err);
}

GRAD_FN(df_grad_gather) {
  df_node n = df_b_node(b, node);
  df_node nx = df_b_node(b, n.inputs[0]);
  if (!df_dtype_is_float(n.dtype)) return 0;
  gx[0] = df_b_scatter_add(b, n.inputs[1], gy, (int)n.attrs.ia[0], nx.ndim, nx.shape);
  return df_grad_status(b);
}

GRAD_FN(df_grad_scatter_add) {
  df_node n = df_b_node(b, node);
  gx[1] = df_b_gather(b, gy, n.inputs[0], (int)n.attrs.ia[0]);
  return df_grad_status(b);
}

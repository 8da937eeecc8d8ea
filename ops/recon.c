/*
** recon.c -- MAE-DFER's reconstruction loss as one op.
**
**   recon_loss(pred [B, M, P], pix [B, C, T, H, W], idx [B, M] i64),
**     ia[0] = tubelet, ia[1] = patch, fa[0] = eps            -> [1]
**   recon_loss_grad(pred, pix, idx, gy [1]), the same attrs -> [B, M, P]
**
** Token n of a clip is the tubelet (t, h, w) in row-major order over
** (T / tubelet, H / patch, W / patch).  For each masked token n =
** idx[b, m] the target row (P = tubelet * patch * patch * C values,
** ordered (frame, y, x, channel)) is:
**   1. the tubelet's pixels, normalised per channel over its tubelet *
**      patch * patch values: (x - mean) / (std + eps), std unbiased;
**   2. frame 0 as it is, each later frame minus the frame before it
**      (the frame difference; with tubelet 2, the original's target).
** The loss is the mean of (pred - target)^2 over B * M * P; the gradient
** with respect to pred is gy * 2 (pred - target) / (B * M * P).  pix is
** an input (the un-normalised video): recon_loss has no gradient with
** respect to it or to idx.  An index outside [0, tokens) is an error.
** The composed form (models/mae_dfer.lua, targets_all) computes the same
** values; this op reads each masked tubelet once and never stores the
** targets.  The device kernels: runtime/recon_cpu.c, and the cuda device's
** library kernels (compiler/codegen_cuda.c).
*/
#include "ops/ops_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

SHAPE_FN(df_shape_recon_loss) {
  char s0[160], s1[160], s2[160];
  const df_node *pred = in[0], *pix = in[1], *idx = in[2];
  int64_t tub = n->attrs.ia[0], pat = n->attrs.ia[1];
  int ok = pred->ndim == 3 && pix->ndim == 5 && idx->ndim == 2 && df_dtype_is_float(pred->dtype) &&
           pix->dtype == pred->dtype && idx->dtype == DF_I64 && tub > 0 && pat > 0;
  ok = ok && pix->shape[0] == pred->shape[0] && idx->shape[0] == pred->shape[0] &&
       idx->shape[1] == pred->shape[1] && pix->shape[2] % tub == 0 && pix->shape[3] % pat == 0 &&
       pix->shape[4] % pat == 0 && pred->shape[2] == tub * pat * pat * pix->shape[1];
  if (!ok)
    return df_err_set(err, DF_ESHAPE,
                      "pred %s, pix %s, idx %s (tubelet %lld, patch %lld): needs float [B, M, tubelet*patch*patch*C], "
                      "[B, C, T, H, W] of one dtype with T, H, W divisible by the tubelet and patch, and i64 [B, M]",
                      df_node_shape_str(pred, s0, sizeof s0), df_node_shape_str(pix, s1, sizeof s1),
                      df_node_shape_str(idx, s2, sizeof s2), (long long)tub, (long long)pat);
  n->dtype = pred->dtype;
  if (n->op == DF_OP_RECON_LOSS_GRAD) {
    const df_node *gy = in[3];
    if (gy->dtype != pred->dtype || df_shape_numel(gy->ndim, gy->shape) != 1)
      return df_err_set(err, DF_ESHAPE, "the loss gradient must be one %s value, got %s",
                        df_dtype_lname(pred->dtype), df_node_shape_str(gy, s0, sizeof s0));
    n->ndim = 3;
    memcpy(n->shape, pred->shape, 3 * sizeof *n->shape);
  } else {
    n->ndim = 1;
    n->shape[0] = 1;
  }
  return 0;
}

/*
** One masked token's target row into tgt[P] (float64), the reference's
** arithmetic: mean, then the unbiased variance about it, per channel.
*/
static void target_row(const double *pix, int64_t C, int64_t T, int64_t H, int64_t W, int64_t tub, int64_t pat,
                       int64_t b, int64_t n, double eps, double *tgt) {
  int64_t nh = H / pat, nw = W / pat;
  int64_t t0 = n / (nh * nw) * tub, y0 = n / nw % nh * pat, x0 = n % nw * pat;
  int64_t cnt = tub * pat * pat;
  for (int64_t c = 0; c < C; c++) {
    const double *plane = pix + (b * C + c) * T * H * W;
    double mu = 0, ss = 0;
    for (int64_t f = 0; f < tub; f++)
      for (int64_t y = 0; y < pat; y++)
        for (int64_t x = 0; x < pat; x++) mu += plane[((t0 + f) * H + y0 + y) * W + x0 + x];
    mu /= (double)cnt;
    for (int64_t f = 0; f < tub; f++)
      for (int64_t y = 0; y < pat; y++)
        for (int64_t x = 0; x < pat; x++) {
          double d = plane[((t0 + f) * H + y0 + y) * W + x0 + x] - mu;
          ss += d * d;
        }
    double sd = sqrt(ss / (double)(cnt - 1)) + eps;
    for (int64_t f = tub - 1; f >= 0; f--)
      for (int64_t y = 0; y < pat; y++)
        for (int64_t x = 0; x < pat; x++) {
          double v = (plane[((t0 + f) * H + y0 + y) * W + x0 + x] - mu) / sd;
          if (f > 0) v -= (plane[((t0 + f - 1) * H + y0 + y) * W + x0 + x] - mu) / sd;
          tgt[((f * pat + y) * pat + x) * C + c] = v;
        }
  }
}

REF_FN(df_ref_recon_loss) {
  const df_node *pred = in[0], *pix = in[1];
  int64_t B = pred->shape[0], M = pred->shape[1], P = pred->shape[2];
  int64_t C = pix->shape[1], T = pix->shape[2], H = pix->shape[3], W = pix->shape[4];
  int64_t tub = n->attrs.ia[0], pat = n->attrs.ia[1];
  int64_t N = T / tub * (H / pat) * (W / pat);
  double eps = n->attrs.fa[0], scale = 1.0 / (double)(B * M * P), acc = 0;
  int grad = n->op == DF_OP_RECON_LOSS_GRAD;
  double gy = grad ? x[3][0] : 0;
  double *tgt = malloc((size_t)(P ? P : 1) * sizeof *tgt);
  if (!tgt) return df_err_set(err, DF_ENOMEM, "out of memory");
  for (int64_t b = 0; b < B; b++)
    for (int64_t m = 0; m < M; m++) {
      double pos = x[2][b * M + m];
      if (!(pos >= 0 && pos < (double)N)) {
        free(tgt);
        return df_err_set(err, DF_ERUNTIME, "index %g at [%lld, %lld] out of range [0, %lld)", pos, (long long)b,
                          (long long)m, (long long)N);
      }
      int64_t tok = (int64_t)pos;
      target_row(x[1], C, T, H, W, tub, pat, b, tok, eps, tgt);
      const double *p = x[0] + (b * M + m) * P;
      for (int64_t j = 0; j < P; j++) {
        double d = p[j] - tgt[j];
        if (grad) y[(b * M + m) * P + j] = gy * 2.0 * d * scale;
        else acc += d * d;
      }
    }
  free(tgt);
  if (!grad) y[0] = acc * scale;
  return 0;
}

GRAD_FN(df_grad_recon_loss) {
  df_node n = df_b_node(b, node);
  df_node_id in[4] = {n.inputs[0], n.inputs[1], n.inputs[2], gy};
  gx[0] = df_b_op(b, DF_OP_RECON_LOSS_GRAD, in, 4, &n.attrs);
  return df_grad_status(b);
}

/*
** recon_cpu.c -- see recon_cpu.h.  A token's target is never stored: per
** channel, the mean and the unbiased variance of its tubelet (float64, the
** reference's order of operations), then one pass over the prediction row
** that forms each target value from the pixels, (x_f - mu) / sd minus the
** same of frame f - 1 for f > 0.
*/
#include "runtime/recon_cpu.h"

#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"
#include "runtime/pool.h"

typedef struct rc_ctx {
  const float *pred, *pix;
  const int64_t *idx;
  float *grad;    /* recon_loss_grad: the result */
  double *part;   /* recon_loss: one partial sum per token */
  double gscale;  /* gy * 2 / (B M P) */
  int64_t M, P, C, T, H, W, tub, pat, N;
  double eps;
  int bad;        /* an index outside [0, N) was seen (first one in bad_at) */
  int64_t bad_at;
} rc_ctx;

static void rc_range(void *ctx, int64_t begin, int64_t end) {
  rc_ctx *a = ctx;
  const int64_t nh = a->H / a->pat, nw = a->W / a->pat, cnt = a->tub * a->pat * a->pat;
  const int64_t C = a->C, pat = a->pat, H = a->H, W = a->W;
  double mu[8], sd[8];
  for (int64_t r = begin; r < end; r++) {
    int64_t b = r / a->M, tok = a->idx[r];
    if (tok < 0 || tok >= a->N) {
      if (!__atomic_exchange_n(&a->bad, 1, __ATOMIC_RELAXED)) a->bad_at = r;
      if (a->part) a->part[r] = 0;
      continue;
    }
    int64_t t0 = tok / (nh * nw) * a->tub, y0 = tok / nw % nh * pat, x0 = tok % nw * pat;
    const float *base = a->pix + b * C * a->T * H * W;
    for (int64_t c = 0; c < C; c++) {
      const float *pl = base + c * a->T * H * W;
      double s = 0, ss = 0;
      for (int64_t f = 0; f < a->tub; f++)
        for (int64_t y = 0; y < pat; y++) {
          const float *row = pl + ((t0 + f) * H + y0 + y) * W + x0;
          for (int64_t x = 0; x < pat; x++) s += row[x];
        }
      double m = s / (double)cnt;
      for (int64_t f = 0; f < a->tub; f++)
        for (int64_t y = 0; y < pat; y++) {
          const float *row = pl + ((t0 + f) * H + y0 + y) * W + x0;
          for (int64_t x = 0; x < pat; x++) {
            double d = row[x] - m;
            ss += d * d;
          }
        }
      mu[c] = m;
      sd[c] = sqrt(ss / (double)(cnt - 1)) + a->eps;
    }
    const float *p = a->pred + r * a->P;
    double acc = 0;
    for (int64_t f = 0; f < a->tub; f++)
      for (int64_t y = 0; y < pat; y++)
        for (int64_t x = 0; x < pat; x++)
          for (int64_t c = 0; c < C; c++) {
            const float *pl = base + c * a->T * H * W + ((t0 + f) * H + y0 + y) * W + x0 + x;
            double v = (pl[0] - mu[c]) / sd[c];
            if (f > 0) v -= (pl[-H * W] - mu[c]) / sd[c];
            int64_t j = ((f * pat + y) * pat + x) * C + c;
            double d = p[j] - v;
            if (a->grad) a->grad[r * a->P + j] = (float)(a->gscale * d);
            else acc += d * d;
          }
    if (a->part) a->part[r] = acc;
  }
}

int df_cpu_recon_loss(const df_graph *g, const df_node *n, void *const *in, void *out, df_err *err) {
  if ((n->op != DF_OP_RECON_LOSS && n->op != DF_OP_RECON_LOSS_GRAD) || n->dtype != DF_F32) return DF_EUNSUPPORTED;
  const df_node *pred = df_graph_node(g, n->inputs[0]), *pix = df_graph_node(g, n->inputs[1]);
  if (pix->shape[1] > 8) return DF_EUNSUPPORTED; /* more channels than the per-channel statistics hold */
  rc_ctx a = {.pred = in[0], .pix = in[1], .idx = in[2], .M = pred->shape[1], .P = pred->shape[2],
              .C = pix->shape[1], .T = pix->shape[2], .H = pix->shape[3], .W = pix->shape[4],
              .tub = n->attrs.ia[0], .pat = n->attrs.ia[1], .eps = n->attrs.fa[0]};
  a.N = a.T / a.tub * (a.H / a.pat) * (a.W / a.pat);
  int64_t rows = pred->shape[0] * a.M;
  double scale = 1.0 / (double)(rows * a.P);
  if (n->op == DF_OP_RECON_LOSS_GRAD) {
    a.grad = out;
    a.gscale = (double)((const float *)in[3])[0] * 2.0 * scale;
  } else {
    a.part = malloc((size_t)(rows ? rows : 1) * sizeof *a.part);
    if (!a.part) return df_err_set(err, DF_ENOMEM, "cpu: out of memory for recon_loss (%s:%d)", n->file, n->line);
  }
  df_pool_run(rows, rc_range, &a);
  if (a.bad) {
    free(a.part);
    return df_err_set(err, DF_ERUNTIME, "%s:%d: %s: index %lld at [%lld, %lld] out of range [0, %lld)", n->file,
                      n->line, df_op_name(n->op), (long long)a.idx[a.bad_at], (long long)(a.bad_at / a.M),
                      (long long)(a.bad_at % a.M), (long long)a.N);
  }
  if (a.part) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++) s += a.part[r];
    ((float *)out)[0] = (float)(s * scale);
    free(a.part);
  }
  return 0;
}

/*
** mixup.c -- batch mixup / cutmix draws, in-place mixing and soft targets
** (see mixup.h).
*/
#include "runtime/mixup.h"

#include <math.h>
#include <stddef.h>

void df_mix_default(df_mix_config *cfg) {
  cfg->mixup_alpha = 0.8;
  cfg->cutmix_alpha = 1.0;
  cfg->prob = 1.0;
  cfg->switch_prob = 0.5;
  cfg->smoothing = 0.1;
  cfg->correct_lam = 1;
}

static int64_t clip64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

int df_mix_draw(df_rng *rng, const df_mix_config *cfg, int H, int W, df_mix_params *out,
                df_err *err) {
  out->cutmix = 0, out->lam = 1.0;
  out->y0 = out->y1 = out->x0 = out->x1 = 0;
  if (H < 1 || W < 1) return df_err_set(err, DF_EINVAL, "mixup: bad frame size %dx%d", H, W);
  if (!isfinite(cfg->mixup_alpha) || !isfinite(cfg->cutmix_alpha) || !(cfg->prob >= 0) ||
      !(cfg->prob <= 1) || !(cfg->switch_prob >= 0) || !(cfg->switch_prob <= 1))
    return df_err_set(err, DF_EINVAL, "mixup: alpha, prob or switch_prob out of range");
  int mixup_on = cfg->mixup_alpha > 0, cutmix_on = cfg->cutmix_alpha > 0;
  if (!mixup_on && !cutmix_on) return 0;
  if (!(df_rng_uniform(rng) < cfg->prob)) return 0;
  int use_cutmix;
  if (mixup_on && cutmix_on) use_cutmix = df_rng_uniform(rng) < cfg->switch_prob;
  else use_cutmix = cutmix_on;
  double lam = use_cutmix ? df_rng_beta(rng, cfg->cutmix_alpha, cfg->cutmix_alpha)
                          : df_rng_beta(rng, cfg->mixup_alpha, cfg->mixup_alpha);
  out->lam = lam;
  if (lam == 1.0) return 0; /* timm returns before touching the batch */
  out->cutmix = use_cutmix;
  if (use_cutmix) {
    double ratio = sqrt(1.0 - lam);
    int64_t cut_h = (int64_t)(H * ratio), cut_w = (int64_t)(W * ratio);
    int64_t cy = (int64_t)df_rng_below(rng, (uint64_t)H);
    int64_t cx = (int64_t)df_rng_below(rng, (uint64_t)W);
    out->y0 = (int)clip64(cy - cut_h / 2, 0, H);
    out->y1 = (int)clip64(cy + cut_h / 2, 0, H);
    out->x0 = (int)clip64(cx - cut_w / 2, 0, W);
    out->x1 = (int)clip64(cx + cut_w / 2, 0, W);
    if (cfg->correct_lam) {
      double area = (double)(out->y1 - out->y0) * (out->x1 - out->x0);
      out->lam = 1.0 - area / ((double)H * W);
    }
  }
  return 0;
}

int df_mix_apply(const df_mix_params *p, float *x, int64_t B, int64_t C, int64_t T, int64_t H,
                 int64_t W, df_err *err) {
  if (B < 1 || C < 1 || T < 1 || H < 1 || W < 1)
    return df_err_set(err, DF_EINVAL, "mixup: bad batch shape [%lld, %lld, %lld, %lld, %lld]",
                      (long long)B, (long long)C, (long long)T, (long long)H, (long long)W);
  if (p->lam == 1.0) return 0;
  const int64_t per = C * T * H * W;
  if (!p->cutmix) {
    /* x_i * lam + x_j * (1 - lam) with both factors as float, as torch's
    ** x.mul_(lam).add_(x.flip(0).mul_(1 - lam)) */
    float la = (float)p->lam, lb = (float)(1.0 - p->lam);
    for (int64_t i = 0; i <= (B - 1) / 2; i++) {
      int64_t j = B - 1 - i;
      float *a = x + i * per, *b = x + j * per;
      if (i == j) {
        for (int64_t k = 0; k < per; k++) a[k] = a[k] * la + a[k] * lb;
        continue;
      }
      for (int64_t k = 0; k < per; k++) {
        float u = a[k], v = b[k];
        a[k] = u * la + v * lb;
        b[k] = v * la + u * lb;
      }
    }
    return 0;
  }
  if (p->y0 < 0 || p->x0 < 0 || p->y1 > H || p->x1 > W)
    return df_err_set(err, DF_EINVAL, "cutmix: box [%d, %d) x [%d, %d) outside %lldx%lld frames",
                      p->y0, p->y1, p->x0, p->x1, (long long)H, (long long)W);
  for (int64_t i = 0; i < B / 2; i++) {
    float *a = x + i * per, *b = x + (B - 1 - i) * per;
    for (int64_t plane = 0; plane < C * T; plane++)
      for (int64_t y = p->y0; y < p->y1; y++) {
        float *ra = a + (plane * H + y) * W, *rb = b + (plane * H + y) * W;
        for (int64_t xx = p->x0; xx < p->x1; xx++) {
          float t = ra[xx];
          ra[xx] = rb[xx];
          rb[xx] = t;
        }
      }
  }
  return 0;
}

int df_mix_targets(double lam, const int64_t *labels, int64_t B, int64_t K, double smoothing,
                   float *out, df_err *err) {
  if (B < 1 || K < 1) return df_err_set(err, DF_EINVAL, "mixup targets: %lld labels, %lld classes",
                                        (long long)B, (long long)K);
  if (!(smoothing >= 0 && smoothing <= 1))
    return df_err_set(err, DF_EINVAL, "mixup targets: smoothing %g outside [0, 1]", smoothing);
  for (int64_t b = 0; b < B; b++)
    if (labels[b] < 0 || labels[b] >= K)
      return df_err_set(err, DF_EINVAL, "mixup targets: label %lld of sample %lld outside [0, %lld)",
                        (long long)labels[b], (long long)b, (long long)K);
  float off = (float)(smoothing / (double)K);
  float on = (float)(1.0 - smoothing + smoothing / (double)K);
  float la = (float)lam, lb = (float)(1.0 - lam);
  for (int64_t b = 0; b < B; b++) {
    int64_t y1 = labels[b], y2 = labels[B - 1 - b];
    for (int64_t k = 0; k < K; k++)
      out[b * K + k] = (k == y1 ? on : off) * la + (k == y2 ? on : off) * lb;
  }
  return 0;
}

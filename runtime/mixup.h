/*
** mixup.h -- mixup / cutmix for a batch (timm's Mixup in 'batch' mode, as
** the original fine-tuning uses it).
**
** One draw per batch: with probability prob, cutmix (probability
** switch_prob) with lam ~ Beta(cutmix_alpha, cutmix_alpha), else mixup with
** lam ~ Beta(mixup_alpha, mixup_alpha).  Sample i is mixed with its
** partner B-1-i (the batch flipped): mixup x_i = lam x_i + (1-lam) x_{B-1-i};
** cutmix pastes the partner's box (the same box in every channel and
** frame).  The cutmix box is timm's rand_bbox: cut = int(side * sqrt(1 -
** lam)) per side, centre uniform in [0, H) x [0, W), half-extents
** cut // 2 each way, clipped to the image; with correct_lam, lam becomes
** 1 - box area / (H W).  Soft targets: one-hot smoothed (off = s/K,
** on = 1 - s + s/K) of label i times lam plus that of label B-1-i times
** 1 - lam.
**
** Draw order: a uniform (< prob to mix), a uniform (< switch_prob for
** cutmix, when both alphas are > 0), the beta draw, then for cutmix the
** box centre row, then column.
*/
#ifndef DF_MIXUP_H
#define DF_MIXUP_H

#include <stdint.h>

#include "compiler/err.h"
#include "runtime/rng.h"

typedef struct df_mix_config {
  double mixup_alpha;  /* 0.8; <= 0 disables mixup */
  double cutmix_alpha; /* 1.0; <= 0 disables cutmix */
  double prob;         /* probability of mixing a batch at all (1.0) */
  double switch_prob;  /* probability of cutmix when both are on (0.5) */
  double smoothing;    /* label smoothing s (0.1) */
  int correct_lam;     /* lam from the clipped box area (1) */
} df_mix_config;

typedef struct df_mix_params {
  int cutmix;         /* 1: cutmix box, 0: mixup blend */
  double lam;         /* weight of sample i; 1 means the batch is left as is */
  int y0, y1, x0, x1; /* cutmix box rows [y0, y1), columns [x0, x1) */
} df_mix_params;

void df_mix_default(df_mix_config *cfg);
/* Draw the batch's parameters for H x W frames. */
int df_mix_draw(df_rng *rng, const df_mix_config *cfg, int H, int W, df_mix_params *out,
                df_err *err);
/* Mix x [B, C, T, H, W] (float, contiguous) in place. */
int df_mix_apply(const df_mix_params *p, float *x, int64_t B, int64_t C, int64_t T, int64_t H,
                 int64_t W, df_err *err);
/* Soft targets out [B, K] from labels [B] (each in [0, K)), as float32
** the way timm computes them (y1 * lam + y2 * (1 - lam)). */
int df_mix_targets(double lam, const int64_t *labels, int64_t B, int64_t K, double smoothing,
                   float *out, df_err *err);

#endif

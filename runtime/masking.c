/*
** masking.c -- tube and part-window mask generators (see masking.h).
*/
#include "runtime/masking.h"

#include <stdlib.h>
#include <string.h>

int64_t df_mask_count(double ratio, int64_t n) {
  double v = ratio * (double)n;
  if (!(v > 0)) return 0;
  if (v >= (double)n) return n;
  return (int64_t)v;
}

/* k ones then n - k zeros, shuffled in place (Fisher-Yates from the end). */
static void shuffle_pattern(df_rng *rng, uint8_t *p, int64_t n, int64_t k) {
  memset(p, 1, (size_t)k);
  memset(p + k, 0, (size_t)(n - k));
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)df_rng_below(rng, (uint64_t)i + 1);
    uint8_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

static int check_grid(int t, int h, int w, double ratio, const char *what, df_err *err) {
  if (t < 1 || h < 1 || w < 1 || (int64_t)t * h * w > DF_MASK_MAX_TOKENS)
    return df_err_set(err, DF_EINVAL, "%s mask: bad token grid [%d, %d, %d]", what, t, h, w);
  if (!(ratio >= 0 && ratio <= 1))
    return df_err_set(err, DF_EINVAL, "%s mask: ratio %g outside [0, 1]", what, ratio);
  return 0;
}

/* Repeat frame 0 of the mask into frames 1..t-1. */
static void repeat_frames(uint8_t *mask, int t, int64_t hw) {
  for (int f = 1; f < t; f++) memcpy(mask + f * hw, mask, (size_t)hw);
}

int df_mask_tube(df_rng *rng, int t, int h, int w, double ratio, uint8_t *mask, df_err *err) {
  if (check_grid(t, h, w, ratio, "tube", err)) return DF_EINVAL;
  int64_t hw = (int64_t)h * w;
  shuffle_pattern(rng, mask, hw, df_mask_count(ratio, hw));
  repeat_frames(mask, t, hw);
  return 0;
}

int df_mask_part_window(df_rng *rng, int t, int h, int w, int win_h, int win_w, double ratio,
                        uint8_t *mask, df_err *err) {
  if (check_grid(t, h, w, ratio, "part-window", err)) return DF_EINVAL;
  if (win_h < 1 || win_w < 1 || h % win_h || w % win_w)
    return df_err_set(err, DF_EINVAL,
                      "part-window mask: window %dx%d does not tile the %dx%d token frame", win_h,
                      win_w, h, w);
  int64_t wn = (int64_t)win_h * win_w, k = df_mask_count(ratio, wn);
  uint8_t small[4096], *p = small;
  if (wn > (int64_t)sizeof small && !(p = malloc((size_t)wn)))
    return df_err_set(err, DF_ENOMEM, "part-window mask: out of memory");
  for (int wy = 0; wy < h / win_h; wy++)
    for (int wx = 0; wx < w / win_w; wx++) {
      shuffle_pattern(rng, p, wn, k);
      for (int y = 0; y < win_h; y++)
        memcpy(mask + (int64_t)(wy * win_h + y) * w + (int64_t)wx * win_w, p + (int64_t)y * win_w,
               (size_t)win_w);
    }
  if (p != small) free(p);
  repeat_frames(mask, t, (int64_t)h * w);
  return 0;
}

/*
** sampling.c -- the frame-index rules of the original (see sampling.h).
*/
#include "runtime/sampling.h"

#include "compiler/crng.h"

uint64_t df_sample_uniform(uint64_t seed, uint64_t k) {
  if (k <= 1) return 0;
  uint64_t lim = (0 - k) % k; /* 2^64 mod k: draws below it would bias */
  for (uint64_t c = 0;; c++) {
    uint64_t d = df_crng_mix(seed ^ df_crng_mix(c));
    if (d >= lim) return d % k;
  }
}

/*
** Element i of np.linspace(start, stop, num) (endpoint=True) as numpy
** computes it in float64.  The product goes through a volatile so that the
** compiler cannot fuse it with the add into one FMA, which rounds once
** instead of twice and could move a value across an integer.
*/
static double linspace_at(double start, double stop, int64_t num, int64_t i) {
  if (num <= 1) return start;
  if (i == num - 1) return stop;
  double step = (stop - start) / (double)(num - 1);
  volatile double y = (double)i * step;
  return y + start;
}

static int check_args(int64_t n, int clip_len, int rate, const char *what, df_err *err) {
  if (n < 1)
    return df_err_set(err, DF_EINVAL, "%s: a clip of %lld frames has nothing to sample", what,
                      (long long)n);
  if (clip_len < 1 || rate < 1)
    return df_err_set(err, DF_EINVAL, "%s: clip_len %d and rate %d must be at least 1", what,
                      clip_len, rate);
  if (n > ((int64_t)1 << 40))
    return df_err_set(err, DF_EINVAL, "%s: %lld frames is too many", what, (long long)n);
  return DF_OK;
}

int df_sample_train(int64_t n, int clip_len, int rate, uint64_t seed, int64_t *out,
                    df_err *err) {
  int rc = check_args(n, clip_len, rate, "sample_train", err);
  if (rc) return rc;
  int64_t span = (int64_t)clip_len * rate;
  if (n <= span) {
    int64_t num = n / rate; /* <= clip_len */
    for (int64_t i = 0; i < clip_len; i++) {
      double x = i < num ? linspace_at(0, (double)n, num, i) : (double)n;
      if (x > (double)(n - 1)) x = (double)(n - 1);
      out[i] = (int64_t)x;
    }
  } else {
    int64_t end = span + (int64_t)df_sample_uniform(seed, (uint64_t)(n - span));
    int64_t start = end - span;
    for (int64_t i = 0; i < clip_len; i++) {
      double x = linspace_at((double)start, (double)end, clip_len, i);
      if (x > (double)(end - 1)) x = (double)(end - 1);
      if (x < (double)start) x = (double)start;
      out[i] = (int64_t)x;
    }
  }
  return DF_OK;
}

int df_sample_test(int64_t n, int clip_len, int rate, int segments, int64_t *out,
                   df_err *err) {
  int rc = check_args(n, clip_len, rate, "sample_test", err);
  if (rc) return rc;
  if (segments < 1)
    return df_err_set(err, DF_EINVAL, "sample_test: segments %d must be at least 1", segments);
  int64_t kept = (n + rate - 1) / rate;           /* frames 0, r, 2r, ... < n */
  int64_t total = kept < clip_len ? clip_len : kept; /* n': padded with the last */
  double step = 0;
  if (segments > 1) {
    step = (double)(total - clip_len) / (double)(segments - 1);
    if (step < 0) step = 0;
  }
  for (int k = 0; k < segments; k++) {
    int64_t start = (int64_t)((double)k * step);
    for (int j = 0; j < clip_len; j++) {
      int64_t pos = start + j; /* position among the n' frames */
      if (pos > kept - 1) pos = kept - 1;
      out[(int64_t)k * clip_len + j] = pos * rate;
    }
  }
  return DF_OK;
}

int df_sample_pretrain(int64_t n, int clip_len, int rate, uint64_t seed, int64_t *out,
                       df_err *err) {
  int rc = check_args(n, clip_len, rate, "sample_pretrain", err);
  if (rc) return rc;
  int64_t skip = (int64_t)clip_len * rate;
  int64_t avg = n - skip + 1;
  int64_t o = 1 + (avg > 0 ? (int64_t)df_sample_uniform(seed, (uint64_t)avg) : 0);
  for (int j = 0; j < clip_len; j++) {
    out[j] = o - 1;
    if (o + rate < n) o += rate;
  }
  return DF_OK;
}

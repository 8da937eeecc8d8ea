/*
** rng.c -- the counter-based generator (see rng.h): SplitMix64 outputs
** indexed by a counter, and the distributions the data pipeline draws.
*/
#include "runtime/rng.h"

#include <math.h>

#define GOLDEN 0x9e3779b97f4a7c15ull

/* SplitMix64's output function: a bijective 64-bit mixer. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

df_rng df_rng_make(uint64_t seed) {
  df_rng r = {seed, 0};
  return r;
}

uint64_t df_rng_derive(uint64_t seed, uint64_t id) {
  return mix64(mix64(seed ^ 0x6a09e667f3bcc909ull) + (id + 1) * GOLDEN);
}

df_rng df_rng_stream(uint64_t seed, uint64_t id) { return df_rng_make(df_rng_derive(seed, id)); }

uint64_t df_rng_u64(df_rng *r) {
  r->counter++;
  return mix64(r->seed + r->counter * GOLDEN);
}

double df_rng_uniform(df_rng *r) { return (double)(df_rng_u64(r) >> 11) * 0x1.0p-53; }

double df_rng_range(df_rng *r, double a, double b) { return a + (b - a) * df_rng_uniform(r); }

double df_rng_normal(df_rng *r) {
  double u1 = 1.0 - df_rng_uniform(r); /* (0, 1]: log is finite */
  double u2 = df_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/*
** Rejection: accept x only below the largest multiple of n that fits in
** 2^64, so every residue is equally likely.
*/
uint64_t df_rng_below(df_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
  for (;;) {
    uint64_t x = df_rng_u64(r);
    if (x >= threshold) return x % n;
  }
}

int64_t df_rng_randint(df_rng *r, int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = (uint64_t)hi - (uint64_t)lo + 1; /* 0 means all 2^64 values */
  uint64_t x = span ? df_rng_below(r, span) : df_rng_u64(r);
  return (int64_t)((uint64_t)lo + x);
}

/*
** Marsaglia & Tsang (2000), "A simple method for generating gamma
** variables": for shape >= 1, d = shape - 1/3, c = 1/sqrt(9d); draw
** x ~ N(0,1), v = (1 + cx)^3, accept d*v on the squeeze or the log test.
** For shape < 1: Gamma(shape) = Gamma(shape + 1) * U^(1/shape).
*/
double df_rng_gamma(df_rng *r, double shape) {
  if (!(shape > 0) || !isfinite(shape)) return 0;
  if (shape < 1) {
    double g = df_rng_gamma(r, shape + 1);
    double u = 1.0 - df_rng_uniform(r); /* (0, 1] */
    return g * pow(u, 1.0 / shape);
  }
  double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = df_rng_normal(r);
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    double u = df_rng_uniform(r);
    double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
    if (u > 0 && log(u) < 0.5 * x2 + d * (1.0 - v + log(v))) return d * v;
  }
}

double df_rng_beta(df_rng *r, double a, double b) {
  if (!(a > 0) || !(b > 0) || !isfinite(a) || !isfinite(b)) return 0;
  double x = df_rng_gamma(r, a), y = df_rng_gamma(r, b);
  if (x + y <= 0) return 0.5;
  return x / (x + y);
}

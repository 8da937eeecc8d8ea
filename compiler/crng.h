/*
** crng.h -- the counter-based random numbers of compiled graphs.
**
** Element i of a random tensor with salt s, drawn with seed k, is a pure
** function of (k, s, i): every backend computes the same value in any
** order and on any number of threads, so one seed gives the same run
** everywhere.  The CUDA and LLVM code generators print this arithmetic.
*/
#ifndef DF_CRNG_H
#define DF_CRNG_H

#include <stdint.h>

static inline uint64_t df_crng_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A uniform float in [0, 1) with 24 random bits (exact in float32). */
static inline double df_crng_u01(uint64_t seed, uint64_t salt, uint64_t i) {
  uint64_t z = df_crng_mix(seed ^ df_crng_mix((salt << 40) ^ i));
  return (double)(z >> 40) * (1.0 / 16777216.0);
}

#endif

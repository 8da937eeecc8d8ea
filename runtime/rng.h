/*
** rng.h -- the counter-based random generator of the data pipeline.
**
** A df_rng is a (seed, counter) pair: draw number c of a stream is a pure
** function of (seed, c) -- the SplitMix64 output function applied to
** seed + (c + 1) * 0x9e3779b97f4a7c15 -- so a stream gives the same numbers
** on every machine, compiler and thread count.  df_rng_stream() derives the
** seed of an independent stream from (seed, stream id) by hashing, so e.g.
** clip i of epoch e draws from df_rng_stream(df_rng_derive(base, e), i)
** whatever the order in which loader threads pick clips up.
**
** Every draw advances the counter by a documented amount (uniform, below:
** one word each, except rejections; normal: two; gamma, beta: a variable
** number).  A df_rng is a plain value: copy it to replay a stream.
*/
#ifndef DF_RNG_H
#define DF_RNG_H

#include <stdint.h>

typedef struct df_rng {
  uint64_t seed;
  uint64_t counter; /* number of 64-bit words drawn so far */
} df_rng;

/* The stream `seed` from its start. */
df_rng df_rng_make(uint64_t seed);
/* The seed of stream `id` of `seed`: a 64-bit hash of the pair, so
** streams of different (seed, id) do not overlap in practice. */
uint64_t df_rng_derive(uint64_t seed, uint64_t id);
/* df_rng_make(df_rng_derive(seed, id)). */
df_rng df_rng_stream(uint64_t seed, uint64_t id);

/* The next 64 random bits. */
uint64_t df_rng_u64(df_rng *r);
/* Uniform in [0, 1), 53 bits. */
double df_rng_uniform(df_rng *r);
/* a + (b - a) * uniform: Python's random.uniform(a, b). */
double df_rng_range(df_rng *r, double a, double b);
/* Standard normal by Box-Muller (two uniforms; the cosine branch only, so
** no state is cached between calls). */
double df_rng_normal(df_rng *r);
/* Uniform integer in [0, n) without modulo bias (rejection); 0 when n is 0. */
uint64_t df_rng_below(df_rng *r, uint64_t n);
/* Uniform integer in [lo, hi], both ends included (Python's
** random.randint); lo when hi < lo. */
int64_t df_rng_randint(df_rng *r, int64_t lo, int64_t hi);
/* Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 through the
** U^(1/shape) boost); 0 for a shape that is not a positive finite number. */
double df_rng_gamma(df_rng *r, double shape);
/* Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b); 0.5 if both
** draws are 0, 0 for a bad parameter. */
double df_rng_beta(df_rng *r, double a, double b);

#endif

/*
** sampling.h -- which frames of a clip of n frames make a training or test
** input: the frame-index rules of the original's data loaders, exactly.
**
** Indices are 0-based frame numbers in [0, n).  The original's settings
** are clip_len 16 (frames per input) and rate 4 (the sampling rate); the
** functions take both so that ablations can change them.
**
** Fine-tuning training (the original's VideoClsDataset[Frame].load_video,
** num_segment 1), with L = clip_len, r = rate:
**   n <= L*r: np.linspace(0, n, n // r), then (L - n // r) copies of n,
**             clipped to [0, n - 1], truncated to integers;
**   n >  L*r: end uniform in [L*r, n), start = end - L*r,
**             np.linspace(start, end, L) clipped to [start, end - 1],
**             truncated.
** np.linspace is reproduced bit for bit in float64: element i is
** i * ((stop - start) / (num - 1)) + start, the last is stop itself, and
** num = 1 gives start.
**
** Testing (load_video in mode 'test', then __getitem__): the frames
** 0, r, 2r, ... < n, padded to at least L with the last; of these n'
** frames, segment k of `segments` is the L consecutive ones from
** start = int(k * max((n' - L) / (segments - 1), 0)) (float64, truncated,
** as the original's int()).  With segments = 1 the original divides by
** zero; here the one segment starts at 0.
**
** Pre-training (the original's VideoMAE._sample_train_indices and
** _video_TSN_decord_batch_loader, num_segments 1, no temporal jitter),
** with skip = L*r:
**   a 1-based offset o = 1 + uniform in [0, n - skip] when n >= skip,
**   o = 1 otherwise; then L frames: frame j is o - 1, after which o grows
**   by r only while o + r < n.
**   So a long clip gives start, start + r, ..., start + (L-1)r, and a short
**   one 0, r, 2r, ... up to the last o - 1 with o + r >= n, repeated: for
**   n = 10 that is 0, 4, 8, 8, ..., and for n = 9 it is 0, 4, 4, ... (the
**   original never reaches frame 8 there; this is reproduced).
**
** Randomness: the draws come from the caller's seed alone (never from a
** global generator): draw c is df_crng_mix(seed ^ df_crng_mix(c)), c = 0,
** 1, ...; a uniform integer below k takes the first draw d >= 2^64 mod k
** and returns d mod k (no bias).  The same seed gives the same indices on
** every machine and thread.
*/
#ifndef DF_SAMPLING_H
#define DF_SAMPLING_H

#include <stdint.h>

#include "compiler/err.h"

#define DF_SAMPLE_CLIP_LEN 16
#define DF_SAMPLE_RATE 4

/* A uniform integer in [0, k) (k >= 1) drawn from `seed` as above. */
uint64_t df_sample_uniform(uint64_t seed, uint64_t k);

/* Fine-tuning training: out[clip_len].  Errors: n < 1, clip_len < 1,
** rate < 1 (DF_EINVAL). */
int df_sample_train(int64_t n, int clip_len, int rate, uint64_t seed, int64_t *out,
                    df_err *err);

/* Testing: out[segments * clip_len], segment k at out + k * clip_len. */
int df_sample_test(int64_t n, int clip_len, int rate, int segments, int64_t *out,
                   df_err *err);

/* Pre-training: out[clip_len]. */
int df_sample_pretrain(int64_t n, int clip_len, int rate, uint64_t seed, int64_t *out,
                       df_err *err);

#endif

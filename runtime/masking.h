/*
** masking.h -- the pre-training mask generators of MAE-DFER.
**
** Both fill a bool mask over the token grid [t, h, w] (t-major, then h,
** then w; N = t*h*w entries, 1 = masked) with one spatial pattern repeated
** in every frame, drawn from a df_rng (so a seed fixes the mask):
**
**   tube:         floor(ratio * h*w) positions of the frame masked,
**                 uniformly without replacement;
**   part-window:  the h x w frame tiled by win_h x win_w windows (which
**                 must divide it); in each window floor(ratio * win_h*win_w)
**                 positions masked uniformly (45 of 50 at full size).
**
** "floor" is the original's int(ratio * n) in double precision (so 0.29 *
** 100 gives 28, as Python does).  A pattern is drawn as a Fisher-Yates
** shuffle of k ones and n - k zeros.
*/
#ifndef DF_MASKING_H
#define DF_MASKING_H

#include <stdint.h>

#include "compiler/err.h"
#include "runtime/rng.h"

/* Most tokens a mask may have (t*h*w). */
#define DF_MASK_MAX_TOKENS (1 << 24)

/* The number of masked positions per frame / per window. */
int64_t df_mask_count(double ratio, int64_t n);

/* mask: t*h*w bytes (0/1).  Errors name the bad size or ratio. */
int df_mask_tube(df_rng *rng, int t, int h, int w, double ratio, uint8_t *mask, df_err *err);
int df_mask_part_window(df_rng *rng, int t, int h, int w, int win_h, int win_w, double ratio,
                        uint8_t *mask, df_err *err);

#endif

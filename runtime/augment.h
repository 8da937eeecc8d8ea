/*
** augment.h -- the training-time augmentations of MAE-DFER, as parameter
** draws (from a df_rng) separated from their application, so one draw per
** clip is applied identically to every frame.
**
** RandAugment ('rand-m7-n4-mstd0.5-inc1', timm/VideoMAE semantics): num_ops
** ops drawn with replacement from the op list; each is applied with
** probability prob; when applied its magnitude is m ~ N(magnitude,
** magnitude_std) clipped to [0, 10], and signed ops take a random sign.
** Every op works on u8 RGB and reproduces PIL (ImageOps / ImageEnhance /
** Image.rotate / Image.transform) bit for bit; ops that read image
** statistics (AutoContrast, Equalize, Contrast) read each frame's own, as
** the original applies the same op and arguments to each frame.
**
**   op                   argument (m in [0, 10])
**   AutoContrast, Equalize, Invert: none
**   Rotate               +-30 m/10 degrees, about the centre, fill, filter
**   PosterizeIncreasing  keep 4 - int(4 m/10) bits
**   SolarizeIncreasing   invert values >= 256 - int(256 m/10)
**   SolarizeAdd          add int(110 m/10) to values < 128 (clip 255)
**   Color/Contrast/Brightness/SharpnessIncreasing: factor 1 +- 0.9 m/10
**   ShearX, ShearY       +-0.3 m/10
**   TranslateXRel/YRel   +-0.45 m/10 of the width / height
**   (non-increasing list, inc0: Posterize int(4 m/10) bits, Solarize
**   threshold int(256 m/10), Color/Contrast/Brightness/Sharpness factor
**   1.8 m/10 + 0.1)
**
** The draw order, for the record: the op indices, then per op a uniform
** (skip when > prob), and only when applied a normal (when mstd > 0) and a
** uniform for the sign of signed ops.
*/
#ifndef DF_AUGMENT_H
#define DF_AUGMENT_H

#include <stdint.h>

#include "compiler/err.h"
#include "runtime/image.h"
#include "runtime/rng.h"

/*       enum             name                    signed */
#define DF_AUG_OPS(X)                                    \
  X(AUTOCONTRAST,   "AutoContrast",            0)        \
  X(EQUALIZE,       "Equalize",                0)        \
  X(INVERT,         "Invert",                  0)        \
  X(ROTATE,         "Rotate",                  1)        \
  X(POSTERIZE_INC,  "PosterizeIncreasing",     0)        \
  X(SOLARIZE_INC,   "SolarizeIncreasing",      0)        \
  X(SOLARIZE_ADD,   "SolarizeAdd",             0)        \
  X(COLOR_INC,      "ColorIncreasing",         1)        \
  X(CONTRAST_INC,   "ContrastIncreasing",      1)        \
  X(BRIGHTNESS_INC, "BrightnessIncreasing",    1)        \
  X(SHARPNESS_INC,  "SharpnessIncreasing",     1)        \
  X(SHEAR_X,        "ShearX",                  1)        \
  X(SHEAR_Y,        "ShearY",                  1)        \
  X(TRANSLATE_X_REL,"TranslateXRel",           1)        \
  X(TRANSLATE_Y_REL,"TranslateYRel",           1)        \
  X(POSTERIZE,      "Posterize",               0)        \
  X(SOLARIZE,       "Solarize",                0)        \
  X(COLOR,          "Color",                   0)        \
  X(CONTRAST,       "Contrast",                0)        \
  X(BRIGHTNESS,     "Brightness",              0)        \
  X(SHARPNESS,      "Sharpness",               0)

typedef enum {
#define X(e, name, sgn) DF_AUG_##e,
  DF_AUG_OPS(X)
#undef X
  DF_AUG_COUNT
} df_aug_op;

const char *df_aug_op_name(df_aug_op op);

/* ------------------------------------------------ single ops (u8, in place) */

/* Photometric ops on any channel count (Color needs 3: RGB).  These are
** PIL's, bit for bit: autocontrast (cutoff 0), equalize, invert,
** posterize (bits 0..8), solarize (threshold), solarize_add (add, below
** 128), and the ImageEnhance blends with their degenerate images (Color:
** grey by PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16; Contrast:
** the L mean, rounded; Brightness: black; Sharpness: PIL's 3x3 SMOOTH
** filter, borders kept). */
void df_aug_autocontrast(df_img *img);
void df_aug_equalize(df_img *img);
void df_aug_invert(df_img *img);
void df_aug_posterize(df_img *img, int bits);
void df_aug_solarize(df_img *img, int threshold);
void df_aug_solarize_add(df_img *img, int add, int threshold);
int df_aug_color(df_img *img, double factor, df_err *err);
void df_aug_contrast(df_img *img, double factor);
void df_aug_brightness(df_img *img, double factor);
/* tmp: a scratch image of img's size (the smoothed copy). */
int df_aug_sharpness(df_img *img, double factor, df_img *tmp, df_err *err);

/* PIL's Image.rotate(degrees, filter, fillcolor) without expand: counter-
** clockwise about (w/2, h/2), matrix entries rounded to 15 decimals as PIL
** does; 0/180 (and 90/270 on squares) take PIL's exact transposes.
** src and dst: same size, distinct buffers. */
int df_aug_rotate(const df_img *src, df_img *dst, double degrees, df_filter filter,
                  const uint8_t *fill, df_err *err);

/* Apply one op with its argument (see the table above) to img in place;
** tmp is a scratch image of img's size (geometric ops and Sharpness). */
int df_aug_op_apply(df_aug_op op, double arg, df_img *img, df_img *tmp, uint8_t fill,
                    df_filter filter, df_err *err);

/* ---------------------------------------------------------- RandAugment */

#define DF_AUG_RA_MAX_OPS 16

typedef struct df_aug_ra_config {
  int num_ops;          /* n (4) */
  double magnitude;     /* m (7) */
  double magnitude_std; /* mstd (0.5); 0 keeps m fixed */
  double prob;          /* each drawn op's probability of applying (0.5) */
  int increasing;       /* inc1: the *Increasing list (1) */
  double translate_pct; /* TranslateXRel/YRel at m = 10 (0.45) */
  uint8_t fill;         /* grey 128 */
  df_filter filter;     /* bicubic */
} df_aug_ra_config;

typedef struct df_aug_ra_step {
  df_aug_op op;
  int applied;
  double magnitude; /* after the normal draw and the clip */
  double arg;       /* the op's argument, sign included */
} df_aug_ra_step;

typedef struct df_aug_ra_params {
  int n;
  df_aug_ra_step step[DF_AUG_RA_MAX_OPS];
  uint8_t fill;
  df_filter filter;
} df_aug_ra_params;

/* 'rand-m7-n4-mstd0.5-inc1'. */
void df_aug_ra_default(df_aug_ra_config *cfg);
/* Parse a timm config string "rand-m9-n2-mstd0.5-inc1" into cfg (keys m,
** n, mstd, inc; others are an error naming the string); cfg starts from
** timm's defaults (m 10, n 2, mstd 0, inc 0), prob 0.5, fill 128, bicubic. */
int df_aug_ra_parse(const char *s, df_aug_ra_config *cfg, df_err *err);
/* Draw one parameter set (one per clip). */
int df_aug_ra_draw(df_rng *rng, const df_aug_ra_config *cfg, df_aug_ra_params *out, df_err *err);
/* Apply a parameter set to one u8 RGB frame in place; tmp: scratch of the
** frame's size (NULL: allocated for the call). */
int df_aug_ra_apply(const df_aug_ra_params *p, df_img *img, df_img *tmp, df_err *err);

/* ------------------------------------------------------------ crop draws */

/*
** Random resized crop parameters (the original's _get_param_spatial_crop,
** log-uniform aspect): 10 tries of area uniform(scale) * h*w and aspect
** exp(uniform(log ratio)), w = round(sqrt(area * aspect)), h =
** round(sqrt(area / aspect)) (round half to even), accepted when 0 < w <=
** img_w and 0 < h <= img_h, then a uniform position; else torchvision's
** centre-crop fallback (aspect clamped to the ratio range).
*/
void df_aug_rrc_draw(df_rng *rng, int img_h, int img_w, const double scale[2],
                     const double ratio[2], df_box *out);

/*
** Random erasing (timm RandomErasing, count 1, cube mode): with
** probability prob, up to `tries` tries of area uniform(min_area,
** max_area) * h*w and aspect exp(uniform(log min_aspect, log max_aspect)),
** h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)),
** accepted when w < img_w and h < img_h, then a uniform position.
** Returns 1 with *out set when a box is chosen, 0 when nothing is erased.
*/
int df_aug_erase_draw(df_rng *rng, int img_h, int img_w, double prob, double min_area,
                      double max_area, double min_aspect, double max_aspect, int tries,
                      df_box *out);
/* Fill the box of every frame of a [C, T, H, W] float clip with fresh
** N(0, 1) noise, drawn frame by frame, then channel, row, column. */
void df_aug_erase_fill(df_rng *rng, float *clip, int C, int T, int H, int W, const df_box *box);

/*
** GroupMultiScaleCrop (pre-training): base = min(img_w, img_h); candidate
** sizes int(base * scale_i), each within 3 pixels (|size - out| < 3) of the
** output side snapped to it; (w, h) pairs whose scale indices differ by at
** most max_distort, one chosen uniformly; then one of the 13 fixed
** offsets (below) uniformly.  The crop may exceed the image when a size
** snapped up (PIL's crop pads with 0 there).
*/
int df_aug_msc_draw(df_rng *rng, int img_w, int img_h, int out_w, int out_h, const double *scales,
                    int nscales, int max_distort, df_box *out, df_err *err);
/* The candidate (w, h) pairs in the original's order into pairs[max][2];
** returns their count. */
int df_aug_msc_pairs(int img_w, int img_h, int out_w, int out_h, const double *scales,
                     int nscales, int max_distort, int (*pairs)[2], int max);
/* The 13 offsets (x, y) with w_step = (img_w - crop_w) // 4, h_step
** likewise (floor division): corners (0,0) (4,0) (0,4) (4,4), centre (2,2),
** edge centres (0,2) (4,2) (2,4) (2,0), quarter points (1,1) (3,1) (1,3)
** (3,3), in steps; the original's order. */
void df_aug_msc_offsets(int img_w, int img_h, int crop_w, int crop_h, int off[13][2]);

/*
** Test view (seg, crop) of `segments` x `crops` on frames already resized
** so the short side is `size`: the first frame t0 = int(seg * step_t),
** step_t = max((n_frames - clip_len) / (segments - 1), 0); the spatial
** offset s0 = int(crop * (long - size) / (crops - 1)) along the long side
** (rows when h >= w), the full short side across.  A count of 1 takes the
** centre (the original divides by zero there).
*/
int df_aug_test_view(int n_frames, int h, int w, int clip_len, int size, int segments, int crops,
                     int seg, int crop, int *t0, df_box *box, df_err *err);

#endif

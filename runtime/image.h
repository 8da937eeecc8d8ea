/*
** image.h -- images for the data pipeline: u8 and f32 HWC views, and the
** geometric and photometric primitives the augmentations are built from.
**
** A df_img is a view: h rows of w pixels of c interleaved channels
** (row-major HWC, row stride w * c), over a buffer the caller owns.
** df_img_alloc()/df_img_release() are a convenience for buffers the
** caller wants malloc'ed.  df_imgf is the same over floats (normalised
** data).  Unless said otherwise, output views must not alias inputs.
**
** Conventions follow what the original (PyTorch + PIL) computes:
**
**   DF_RESIZE_PIL_BILINEAR, DF_RESIZE_PIL_BICUBIC: PIL's Image.resize
**     (libImaging/Resample.c): separable, horizontal pass first, triangle
**     or Keys a = -0.5 cubic filter whose support widens by the scale when
**     downscaling (antialias), pixel centres at i + 0.5.  On u8 data the
**     weights are 22-bit fixed point and the horizontal pass is rounded to
**     u8 before the vertical one, as PIL does: results are bit-identical to
**     PIL on RGB images.  On f32 data it is PIL's mode "F" arithmetic
**     (double weights and sums, float results).
**   DF_RESIZE_LINEAR: torch.nn.functional.interpolate(mode="bilinear",
**     align_corners=False, antialias=False): source x = (x' + 0.5) * in/out
**     - 0.5 clamped at 0, two taps, float arithmetic.  This is what the
**     original's random resized crop does (on normalised float frames).
**     On u8 data the float result is rounded to nearest (no original uses
**     that path; cv2.INTER_LINEAR's fixed point is not reproduced).
**   df_img_affine(): PIL's Image.transform(AFFINE) with BILINEAR or BICUBIC
**     (libImaging/Geometry.c): the output pixel (x, y) samples the input at
**     (a(x+.5) + b(y+.5) + c, d(x+.5) + e(y+.5) + f); points outside
**     [0, w) x [0, h) take the fill colour; edges are clamped; bicubic is
**     PIL's a = -1 cubic convolution; the result is truncated (not rounded)
**     to u8 and clipped to [0, 255], as PIL does.
*/
#ifndef DF_IMAGE_H
#define DF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/err.h"

/* Largest side accepted anywhere (keeps every index product in range). */
#define DF_IMG_MAX_SIDE 32768
#define DF_IMG_MAX_CHANNELS 4

typedef struct df_img {
  int h, w, c;
  uint8_t *px; /* h * w * c bytes, HWC */
} df_img;

typedef struct df_imgf {
  int h, w, c;
  float *px; /* h * w * c floats, HWC */
} df_imgf;

/* A rectangle of pixels: columns [x, x + w), rows [y, y + h). */
typedef struct df_box {
  int x, y, w, h;
} df_box;

extern const float DF_IMAGENET_MEAN[3]; /* 0.485 0.456 0.406 */
extern const float DF_IMAGENET_STD[3];  /* 0.229 0.224 0.225 */

/* View constructors (no allocation). */
df_img df_img_view(uint8_t *px, int h, int w, int c);
df_imgf df_imgf_view(float *px, int h, int w, int c);
/* Check sizes (1..DF_IMG_MAX_SIDE, 1..DF_IMG_MAX_CHANNELS channels) and
** malloc the pixels (zeroed); release frees them and zeroes the view. */
int df_img_alloc(df_img *img, int h, int w, int c, df_err *err);
void df_img_release(df_img *img);
int df_imgf_alloc(df_imgf *img, int h, int w, int c, df_err *err);
void df_imgf_release(df_imgf *img);
/* 0 if the view is usable (sizes in range, px not NULL), else an error
** naming `what`. */
int df_img_check(const df_img *img, const char *what, df_err *err);
int df_imgf_check(const df_imgf *img, const char *what, df_err *err);

/* PIL's Image.crop: dst (its size is the crop size, same channels as src)
** receives src's pixels from column x0, row y0 on; pixels that fall
** outside src are 0. */
int df_img_crop(const df_img *src, int x0, int y0, df_img *dst, df_err *err);
int df_imgf_crop(const df_imgf *src, int x0, int y0, df_imgf *dst, df_err *err);

/* Mirror left-right, in place. */
void df_img_flip_h(df_img *img);
void df_imgf_flip_h(df_imgf *img);

/* ------------------------------------------------------------------ resize */

typedef enum {
  DF_RESIZE_PIL_BILINEAR,
  DF_RESIZE_PIL_BICUBIC,
  DF_RESIZE_LINEAR
} df_resize_kind;

/* Parse "pil_bilinear" | "bilinear" (PIL), "pil_bicubic" | "bicubic",
** "linear" | "torch" (no antialias); 0 or -1. */
int df_resize_kind_parse(const char *s, df_resize_kind *out);

/*
** A resize plan: the weights that map the rectangle `src` of an input
** image onto an out_h x out_w output, computed once (per row and per
** column) and reused for every frame of a clip.  The rectangle is cropped
** the way a tensor slice is: the filter never reads outside it (edges are
** clamped / weights renormalised inside it).  The plan owns a scratch
** buffer, so one plan serves one thread at a time.
*/
typedef struct df_resize df_resize;

df_resize *df_resize_new(df_box src, int out_h, int out_w, df_resize_kind kind, df_err *err);
void df_resize_free(df_resize *p);
/* Resample: src must contain the plan's rectangle; dst must be
** out_h x out_w with src's channels. */
int df_resize_u8(df_resize *p, const df_img *src, df_img *dst, df_err *err);
int df_resize_f32(df_resize *p, const df_imgf *src, df_imgf *dst, df_err *err);
/* One-shot forms over the whole of src (a plan made and freed). */
int df_img_resize(const df_img *src, df_img *dst, df_resize_kind kind, df_err *err);
int df_imgf_resize(const df_imgf *src, df_imgf *dst, df_resize_kind kind, df_err *err);

/* The size of a short-side resize to `size` (the original's
** get_resize_sizes): the short side becomes size, the long side
** int(size * long / short); a square becomes size x size. */
void df_img_short_side_size(int h, int w, int size, int *out_h, int *out_w);

/* ------------------------------------------------------------------ affine */

typedef enum { DF_FILTER_BILINEAR, DF_FILTER_BICUBIC } df_filter;

/* PIL Image.transform(size, AFFINE, m, filter, fillcolor=fill) (see the
** head comment); fill has src->c values (NULL: 0).  dst sets the output
** size and must have src's channels. */
int df_img_affine(const df_img *src, df_img *dst, const double m[6], df_filter filter,
                  const uint8_t *fill, df_err *err);

/* ----------------------------------------------------------- normalisation */

/* dst = (src / 255 - mean[c]) / std[c] in float, as the original's
** ToTensor + Normalize compute it.  dst has src's size; c <= 4. */
int df_img_normalize(const df_img *src, df_imgf *dst, const float *mean, const float *std,
                     df_err *err);
/* Copy an HWC float image into planes: channel k of pixel (y, x) goes to
** dst[k * plane_stride + y * w + x] (e.g. one frame of a [C, T, H, W]
** tensor with plane_stride = T * H * W). */
void df_imgf_to_planar(const df_imgf *src, float *dst, int64_t plane_stride);

#endif

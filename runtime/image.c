/*
** image.c -- image views, crop, flip, PIL- and torch-compatible resizing,
** PIL's affine transform, and normalisation (see image.h for the
** conventions).  Inner loops run over precomputed per-row / per-column
** weights with no per-pixel calls through pointers.
*/
#include "runtime/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const float DF_IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
const float DF_IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

/* ------------------------------------------------------------------ views */

df_img df_img_view(uint8_t *px, int h, int w, int c) {
  df_img v = {h, w, c, px};
  return v;
}

df_imgf df_imgf_view(float *px, int h, int w, int c) {
  df_imgf v = {h, w, c, px};
  return v;
}

static int check_dims(int h, int w, int c, const char *what, df_err *err) {
  if (h < 1 || w < 1 || h > DF_IMG_MAX_SIDE || w > DF_IMG_MAX_SIDE)
    return df_err_set(err, DF_EINVAL, "%s: image size %dx%d (height x width) outside 1..%d",
                      what, h, w, DF_IMG_MAX_SIDE);
  if (c < 1 || c > DF_IMG_MAX_CHANNELS)
    return df_err_set(err, DF_EINVAL, "%s: %d channels (1..%d)", what, c, DF_IMG_MAX_CHANNELS);
  return 0;
}

int df_img_check(const df_img *img, const char *what, df_err *err) {
  if (!img || !img->px) return df_err_set(err, DF_EINVAL, "%s: no pixels", what);
  return check_dims(img->h, img->w, img->c, what, err);
}

int df_imgf_check(const df_imgf *img, const char *what, df_err *err) {
  if (!img || !img->px) return df_err_set(err, DF_EINVAL, "%s: no pixels", what);
  return check_dims(img->h, img->w, img->c, what, err);
}

int df_img_alloc(df_img *img, int h, int w, int c, df_err *err) {
  img->px = NULL;
  if (check_dims(h, w, c, "image", err)) return DF_EINVAL;
  img->px = calloc((size_t)h * w * c, 1);
  if (!img->px) return df_err_set(err, DF_ENOMEM, "image %dx%dx%d: out of memory", h, w, c);
  img->h = h, img->w = w, img->c = c;
  return 0;
}

void df_img_release(df_img *img) {
  if (!img) return;
  free(img->px);
  memset(img, 0, sizeof *img);
}

int df_imgf_alloc(df_imgf *img, int h, int w, int c, df_err *err) {
  img->px = NULL;
  if (check_dims(h, w, c, "image", err)) return DF_EINVAL;
  img->px = calloc((size_t)h * w * c, sizeof(float));
  if (!img->px) return df_err_set(err, DF_ENOMEM, "image %dx%dx%d: out of memory", h, w, c);
  img->h = h, img->w = w, img->c = c;
  return 0;
}

void df_imgf_release(df_imgf *img) {
  if (!img) return;
  free(img->px);
  memset(img, 0, sizeof *img);
}

/* ------------------------------------------------------------ crop, flip */

/* The columns [cx0, cx1) of dst that map inside src (x0 + cx in [0, sw)). */
static void inside_span(int x0, int dw, int sw, int *cx0, int *cx1) {
  long a = x0 < 0 ? -(long)x0 : 0;
  long b = (long)sw - x0;
  if (b > dw) b = dw;
  if (a > dw) a = dw;
  if (b < a) b = a;
  *cx0 = (int)a, *cx1 = (int)b;
}

#define CROP_BODY(T)                                                                 \
  int cx0, cx1;                                                                      \
  inside_span(x0, dst->w, src->w, &cx0, &cx1);                                       \
  size_t c = (size_t)src->c;                                                         \
  for (int y = 0; y < dst->h; y++) {                                                 \
    T *out = dst->px + (size_t)y * dst->w * c;                                       \
    long sy = (long)y0 + y;                                                          \
    if (sy < 0 || sy >= src->h || cx1 <= cx0) {                                     \
      memset(out, 0, (size_t)dst->w * c * sizeof(T));                                \
      continue;                                                                      \
    }                                                                                \
    const T *in = src->px + ((size_t)sy * src->w + (size_t)((long)x0 + cx0)) * c;    \
    memset(out, 0, (size_t)cx0 * c * sizeof(T));                                     \
    memcpy(out + (size_t)cx0 * c, in, (size_t)(cx1 - cx0) * c * sizeof(T));          \
    memset(out + (size_t)cx1 * c, 0, (size_t)(dst->w - cx1) * c * sizeof(T));        \
  }                                                                                  \
  return 0;

int df_img_crop(const df_img *src, int x0, int y0, df_img *dst, df_err *err) {
  if (df_img_check(src, "crop input", err) || df_img_check(dst, "crop output", err)) return DF_EINVAL;
  if (src->c != dst->c)
    return df_err_set(err, DF_EINVAL, "crop: %d input channels, %d output channels", src->c, dst->c);
  CROP_BODY(uint8_t)
}

int df_imgf_crop(const df_imgf *src, int x0, int y0, df_imgf *dst, df_err *err) {
  if (df_imgf_check(src, "crop input", err) || df_imgf_check(dst, "crop output", err)) return DF_EINVAL;
  if (src->c != dst->c)
    return df_err_set(err, DF_EINVAL, "crop: %d input channels, %d output channels", src->c, dst->c);
  CROP_BODY(float)
}

#define FLIP_BODY(T)                                                     \
  if (!img || !img->px) return;                                          \
  int c = img->c;                                                        \
  for (int y = 0; y < img->h; y++) {                                     \
    T *row = img->px + (size_t)y * img->w * c;                           \
    for (int a = 0, b = img->w - 1; a < b; a++, b--)                     \
      for (int k = 0; k < c; k++) {                                      \
        T t = row[a * c + k];                                            \
        row[a * c + k] = row[b * c + k];                                 \
        row[b * c + k] = t;                                              \
      }                                                                  \
  }

void df_img_flip_h(df_img *img) { FLIP_BODY(uint8_t) }
void df_imgf_flip_h(df_imgf *img) { FLIP_BODY(float) }

/* ----------------------------------------------------------------- resize */

int df_resize_kind_parse(const char *s, df_resize_kind *out) {
  if (!s) return -1;
  if (!strcmp(s, "pil_bilinear") || !strcmp(s, "bilinear")) *out = DF_RESIZE_PIL_BILINEAR;
  else if (!strcmp(s, "pil_bicubic") || !strcmp(s, "bicubic")) *out = DF_RESIZE_PIL_BICUBIC;
  else if (!strcmp(s, "linear") || !strcmp(s, "torch")) *out = DF_RESIZE_LINEAR;
  else return -1;
  return 0;
}

#define PRECISION_BITS (32 - 8 - 2)

/* One axis of a plan.  PIL kinds: output i reads `count[i]` inputs from
** `start[i]` (absolute index) with weights w (double) / wi (fixed point),
** ksize per output.  LINEAR: two taps i0, i1 with float weights l0, l1. */
typedef struct axis {
  int out, ksize, copy; /* copy: out == in and no offset change: identity */
  int *start, *count;
  double *w;
  int32_t *wi;
  int *i0, *i1;
  float *l0, *l1;
} axis;

struct df_resize {
  df_resize_kind kind;
  df_box src;
  int out_h, out_w;
  axis ax, ay;
  void *scratch; /* horizontal-pass rows, then one accumulator row */
  size_t scratch_bytes;
};

static double filter_bilinear(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

static double filter_bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static void axis_free(axis *a) {
  free(a->start), free(a->count), free(a->w), free(a->wi);
  free(a->i0), free(a->i1), free(a->l0), free(a->l1);
  memset(a, 0, sizeof *a);
}

/*
** PIL's precompute_coeffs() + normalize_coeffs_8bpc() for an input span
** [off, off + in) of an axis and `out` outputs; `bicubic` picks the filter.
*/
static int axis_pil(axis *a, int off, int in, int out, int bicubic) {
  double support = bicubic ? 2.0 : 1.0;
  double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
  support *= filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  a->out = out, a->ksize = ksize;
  a->start = malloc(sizeof(int) * out);
  a->count = malloc(sizeof(int) * out);
  a->w = calloc((size_t)out * ksize, sizeof(double));
  a->wi = calloc((size_t)out * ksize, sizeof(int32_t));
  if (!a->start || !a->count || !a->w || !a->wi) return -1;
  for (int xx = 0; xx < out; xx++) {
    double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in) xmax = in;
    xmax -= xmin;
    double *k = a->w + (size_t)xx * ksize;
    for (int x = 0; x < xmax; x++) {
      double w = bicubic ? filter_bicubic((x + xmin - center + 0.5) * ss)
                         : filter_bilinear((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    int32_t *ki = a->wi + (size_t)xx * ksize;
    for (int x = 0; x < ksize; x++)
      ki[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                       : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
    a->start[xx] = off + xmin;
    a->count[xx] = xmax;
  }
  return 0;
}

/*
** torch's bilinear (align_corners=False) source indices and lambdas, in
** float as its CPU kernel computes them (area_pixel_compute_source_index
** + guard_index_and_lambda); equal sizes copy.
*/
static int axis_linear(axis *a, int off, int in, int out) {
  a->out = out, a->ksize = 2;
  a->i0 = malloc(sizeof(int) * out);
  a->i1 = malloc(sizeof(int) * out);
  a->l0 = malloc(sizeof(float) * out);
  a->l1 = malloc(sizeof(float) * out);
  if (!a->i0 || !a->i1 || !a->l0 || !a->l1) return -1;
  float scale = (float)in / (float)out;
  for (int x = 0; x < out; x++) {
    int i0, i1;
    float l0, l1;
    if (in == out) {
      i0 = i1 = x, l0 = 1.0f, l1 = 0.0f;
    } else {
      float real = scale * ((float)x + 0.5f) - 0.5f;
      if (real < 0) real = 0;
      long f = (long)floorf(real);
      i0 = (int)(f < in - 1 ? f : in - 1);
      float lam = real - (float)i0;
      if (lam < 0) lam = 0;
      if (lam > 1) lam = 1;
      i1 = i0 + (i0 < in - 1 ? 1 : 0);
      l1 = lam, l0 = 1.0f - lam;
    }
    a->i0[x] = off + i0, a->i1[x] = off + i1, a->l0[x] = l0, a->l1[x] = l1;
  }
  return 0;
}

void df_resize_free(df_resize *p) {
  if (!p) return;
  axis_free(&p->ax);
  axis_free(&p->ay);
  free(p->scratch);
  free(p);
}

df_resize *df_resize_new(df_box src, int out_h, int out_w, df_resize_kind kind, df_err *err) {
  if (src.x < 0 || src.y < 0 || src.w < 1 || src.h < 1 || src.w > DF_IMG_MAX_SIDE ||
      src.h > DF_IMG_MAX_SIDE || src.x > DF_IMG_MAX_SIDE || src.y > DF_IMG_MAX_SIDE) {
    df_err_set(err, DF_EINVAL, "resize: bad source rectangle %dx%d at (%d, %d)", src.w, src.h,
               src.x, src.y);
    return NULL;
  }
  if (check_dims(out_h, out_w, 1, "resize output", err)) return NULL;
  if (kind != DF_RESIZE_PIL_BILINEAR && kind != DF_RESIZE_PIL_BICUBIC && kind != DF_RESIZE_LINEAR) {
    df_err_set(err, DF_EINVAL, "resize: unknown kind %d", (int)kind);
    return NULL;
  }
  df_resize *p = calloc(1, sizeof *p);
  if (!p) goto oom;
  p->kind = kind, p->src = src, p->out_h = out_h, p->out_w = out_w;
  int rc;
  if (kind == DF_RESIZE_LINEAR)
    rc = axis_linear(&p->ax, src.x, src.w, out_w) || axis_linear(&p->ay, src.y, src.h, out_h);
  else
    rc = axis_pil(&p->ax, src.x, src.w, out_w, kind == DF_RESIZE_PIL_BICUBIC) ||
         axis_pil(&p->ay, src.y, src.h, out_h, kind == DF_RESIZE_PIL_BICUBIC);
  if (rc) goto oom;
  p->ax.copy = out_w == src.w;
  p->ay.copy = out_h == src.h;
  /* intermediate: out_w x src.h rows of up to 4 channels of double, plus
  ** one accumulator row of out_w x 4 doubles */
  p->scratch_bytes = ((size_t)out_w * src.h + (size_t)out_w) * DF_IMG_MAX_CHANNELS * sizeof(double);
  p->scratch = malloc(p->scratch_bytes);
  if (!p->scratch) goto oom;
  return p;
oom:
  df_resize_free(p);
  df_err_set(err, DF_ENOMEM, "resize %dx%d -> %dx%d: out of memory", src.w, src.h, out_w, out_h);
  return NULL;
}

static int check_resize_io(const df_resize *p, int sh, int sw, int sc, int dh, int dw, int dc,
                           df_err *err) {
  if (!p) return df_err_set(err, DF_EINVAL, "resize: no plan");
  if (p->src.x + p->src.w > sw || p->src.y + p->src.h > sh)
    return df_err_set(err, DF_EINVAL,
                      "resize: source rectangle %dx%d at (%d, %d) does not fit a %dx%d image",
                      p->src.w, p->src.h, p->src.x, p->src.y, sw, sh);
  if (dh != p->out_h || dw != p->out_w || dc != sc)
    return df_err_set(err, DF_EINVAL, "resize: output is %dx%dx%d, the plan makes %dx%dx%d", dh, dw,
                      dc, p->out_h, p->out_w, sc);
  return 0;
}

static inline uint8_t clip8_fixed(int32_t ss) {
  int32_t v = ss >> PRECISION_BITS; /* arithmetic shift, as PIL's table lookup */
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The range of source rows the vertical pass reads. */
static void rows_needed(const df_resize *p, int *first, int *last) {
  if (p->kind == DF_RESIZE_LINEAR) {
    int lo = p->ay.i0[0], hi = p->ay.i1[0];
    for (int i = 0; i < p->out_h; i++) {
      if (p->ay.i0[i] < lo) lo = p->ay.i0[i];
      if (p->ay.i1[i] > hi) hi = p->ay.i1[i];
    }
    *first = lo, *last = hi + 1;
  } else if (p->ay.copy) {
    *first = p->src.y, *last = p->src.y + p->src.h;
  } else {
    *first = p->ay.start[0];
    *last = p->ay.start[p->out_h - 1] + p->ay.count[p->out_h - 1];
  }
}

/*
** PIL u8: horizontal pass into u8 rows [first, last) of the rectangle,
** then the vertical pass, each with 22-bit weights and PIL's rounding.
*/
static void resize_pil_u8(df_resize *p, const df_img *src, df_img *dst) {
  const int c = src->c, ow = p->out_w, oh = p->out_h;
  int first, last;
  rows_needed(p, &first, &last);
  uint8_t *tmp = p->scratch;
  const size_t trow = (size_t)ow * c;
  /* horizontal */
  for (int y = first; y < last; y++) {
    const uint8_t *in = src->px + (size_t)y * src->w * c;
    uint8_t *out = tmp + (size_t)(y - first) * trow;
    if (p->ax.copy) {
      memcpy(out, in + (size_t)p->src.x * c, trow);
      continue;
    }
    for (int xx = 0; xx < ow; xx++) {
      const int32_t *k = p->ax.wi + (size_t)xx * p->ax.ksize;
      const uint8_t *s = in + (size_t)p->ax.start[xx] * c;
      int n = p->ax.count[xx];
      for (int ch = 0; ch < c; ch++) {
        int32_t ss = 1 << (PRECISION_BITS - 1);
        for (int x = 0; x < n; x++) ss += (int32_t)s[x * c + ch] * k[x];
        out[xx * c + ch] = clip8_fixed(ss);
      }
    }
  }
  /* vertical: one accumulator row, taps added row-vector-wise */
  int32_t *acc = (int32_t *)((char *)p->scratch + (size_t)ow * p->src.h * DF_IMG_MAX_CHANNELS * sizeof(double));
  for (int yy = 0; yy < oh; yy++) {
    uint8_t *out = dst->px + (size_t)yy * trow;
    if (p->ay.copy) {
      memcpy(out, tmp + (size_t)(p->src.y + yy - first) * trow, trow);
      continue;
    }
    const int32_t *k = p->ay.wi + (size_t)yy * p->ay.ksize;
    const uint8_t *base = tmp + (size_t)(p->ay.start[yy] - first) * trow;
    int n = p->ay.count[yy];
    for (size_t i = 0; i < trow; i++) acc[i] = 1 << (PRECISION_BITS - 1);
    for (int y = 0; y < n; y++) {
      const uint8_t *row = base + (size_t)y * trow;
      int32_t ky = k[y];
      for (size_t i = 0; i < trow; i++) acc[i] += (int32_t)row[i] * ky;
    }
    for (size_t i = 0; i < trow; i++) out[i] = clip8_fixed(acc[i]);
  }
}

/* PIL mode "F": double weights and sums, float intermediate and result. */
static void resize_pil_f32(df_resize *p, const df_imgf *src, df_imgf *dst) {
  const int c = src->c, ow = p->out_w, oh = p->out_h;
  int first, last;
  rows_needed(p, &first, &last);
  float *tmp = p->scratch;
  const size_t trow = (size_t)ow * c;
  for (int y = first; y < last; y++) {
    const float *in = src->px + (size_t)y * src->w * c;
    float *out = tmp + (size_t)(y - first) * trow;
    if (p->ax.copy) {
      memcpy(out, in + (size_t)p->src.x * c, trow * sizeof(float));
      continue;
    }
    for (int xx = 0; xx < ow; xx++) {
      const double *k = p->ax.w + (size_t)xx * p->ax.ksize;
      const float *s = in + (size_t)p->ax.start[xx] * c;
      int n = p->ax.count[xx];
      for (int ch = 0; ch < c; ch++) {
        double ss = 0.0;
        for (int x = 0; x < n; x++) ss += s[x * c + ch] * k[x];
        out[xx * c + ch] = (float)ss;
      }
    }
  }
  double *acc = (double *)((char *)p->scratch + (size_t)ow * p->src.h * DF_IMG_MAX_CHANNELS * sizeof(double));
  for (int yy = 0; yy < oh; yy++) {
    float *out = dst->px + (size_t)yy * trow;
    if (p->ay.copy) {
      memcpy(out, tmp + (size_t)(p->src.y + yy - first) * trow, trow * sizeof(float));
      continue;
    }
    const double *k = p->ay.w + (size_t)yy * p->ay.ksize;
    const float *base = tmp + (size_t)(p->ay.start[yy] - first) * trow;
    int n = p->ay.count[yy];
    for (size_t i = 0; i < trow; i++) acc[i] = 0.0;
    for (int y = 0; y < n; y++) {
      const float *row = base + (size_t)y * trow;
      double ky = k[y];
      for (size_t i = 0; i < trow; i++) acc[i] += row[i] * ky;
    }
    for (size_t i = 0; i < trow; i++) out[i] = (float)acc[i];
  }
}

/*
** torch bilinear in float: rows t = a*l0 + b*l1 along x, then
** out = t0*l0y + t1*l1y -- the order of torch's separable kernel.
** T is the input element type; the float result goes to `outf` (f32
** output) or is rounded into `outu` (u8 output).
*/
#define LINEAR_BODY(T)                                                             \
  const int c = src->c, ow = p->out_w, oh = p->out_h;                              \
  int first, last;                                                                 \
  rows_needed(p, &first, &last);                                                   \
  float *tmp = p->scratch;                                                         \
  const size_t trow = (size_t)ow * c;                                              \
  for (int y = first; y < last; y++) {                                             \
    const T *in = src->px + (size_t)y * src->w * c;                                \
    float *out = tmp + (size_t)(y - first) * trow;                                 \
    for (int xx = 0; xx < ow; xx++) {                                              \
      const T *a = in + (size_t)p->ax.i0[xx] * c, *b = in + (size_t)p->ax.i1[xx] * c; \
      float l0 = p->ax.l0[xx], l1 = p->ax.l1[xx];                                  \
      for (int ch = 0; ch < c; ch++)                                               \
        out[xx * c + ch] = (float)a[ch] * l0 + (float)b[ch] * l1;                  \
    }                                                                              \
  }                                                                                \
  for (int yy = 0; yy < oh; yy++) {                                                \
    const float *r0 = tmp + (size_t)(p->ay.i0[yy] - first) * trow;                 \
    const float *r1 = tmp + (size_t)(p->ay.i1[yy] - first) * trow;                 \
    float l0 = p->ay.l0[yy], l1 = p->ay.l1[yy];                                    \
    STORE_ROW                                                                      \
  }

static void resize_linear_f32(df_resize *p, const df_imgf *src, df_imgf *dst) {
#define STORE_ROW                                                   \
  float *o = dst->px + (size_t)yy * trow;                           \
  for (size_t i = 0; i < trow; i++) o[i] = r0[i] * l0 + r1[i] * l1;
  LINEAR_BODY(float)
#undef STORE_ROW
}

static void resize_linear_u8(df_resize *p, const df_img *src, df_img *dst) {
#define STORE_ROW                                                   \
  uint8_t *o = dst->px + (size_t)yy * trow;                         \
  for (size_t i = 0; i < trow; i++) {                               \
    float v = r0[i] * l0 + r1[i] * l1 + 0.5f;                       \
    o[i] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);         \
  }
  LINEAR_BODY(uint8_t)
#undef STORE_ROW
}

int df_resize_u8(df_resize *p, const df_img *src, df_img *dst, df_err *err) {
  if (df_img_check(src, "resize input", err) || df_img_check(dst, "resize output", err)) return DF_EINVAL;
  if (check_resize_io(p, src->h, src->w, src->c, dst->h, dst->w, dst->c, err)) return DF_EINVAL;
  if (p->kind == DF_RESIZE_LINEAR) resize_linear_u8(p, src, dst);
  else resize_pil_u8(p, src, dst);
  return 0;
}

int df_resize_f32(df_resize *p, const df_imgf *src, df_imgf *dst, df_err *err) {
  if (df_imgf_check(src, "resize input", err) || df_imgf_check(dst, "resize output", err)) return DF_EINVAL;
  if (check_resize_io(p, src->h, src->w, src->c, dst->h, dst->w, dst->c, err)) return DF_EINVAL;
  if (p->kind == DF_RESIZE_LINEAR) resize_linear_f32(p, src, dst);
  else resize_pil_f32(p, src, dst);
  return 0;
}

int df_img_resize(const df_img *src, df_img *dst, df_resize_kind kind, df_err *err) {
  if (df_img_check(src, "resize input", err) || df_img_check(dst, "resize output", err)) return DF_EINVAL;
  df_box b = {0, 0, src->w, src->h};
  df_resize *p = df_resize_new(b, dst->h, dst->w, kind, err);
  if (!p) return err ? err->code : DF_EINVAL;
  int rc = df_resize_u8(p, src, dst, err);
  df_resize_free(p);
  return rc;
}

int df_imgf_resize(const df_imgf *src, df_imgf *dst, df_resize_kind kind, df_err *err) {
  if (df_imgf_check(src, "resize input", err) || df_imgf_check(dst, "resize output", err)) return DF_EINVAL;
  df_box b = {0, 0, src->w, src->h};
  df_resize *p = df_resize_new(b, dst->h, dst->w, kind, err);
  if (!p) return err ? err->code : DF_EINVAL;
  int rc = df_resize_f32(p, src, dst, err);
  df_resize_free(p);
  return rc;
}

void df_img_short_side_size(int h, int w, int size, int *out_h, int *out_w) {
  if (h < 1 || w < 1) {
    *out_h = *out_w = size;
    return;
  }
  if (w < h) {
    *out_w = size;
    *out_h = (int)((double)size * h / w);
  } else {
    *out_h = size;
    *out_w = (int)((double)size * w / h);
  }
}

/* ----------------------------------------------------------------- affine */

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* PIL's FLOOR(): floor for negatives, truncation otherwise. */
static inline int pil_floor(double v) { return v < 0.0 ? (int)floor(v) : (int)v; }

/* PIL's BICUBIC() macro: a = -1 cubic convolution of four samples. */
static inline double pil_cubic(double v1, double v2, double v3, double v4, double d) {
  double p1 = v2;
  double p2 = -v1 + v3;
  double p3 = 2 * (v1 - v2) + v3 - v4;
  double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

/*
** PIL's ImagingGenericTransform with affine_transform and the bilinear /
** bicubic filters of Geometry.c.  Rows past the edge repeat the last row
** (PIL's "v2 = v1" fallbacks are exactly edge clamping); columns clamp.
*/
int df_img_affine(const df_img *src, df_img *dst, const double m[6], df_filter filter,
                  const uint8_t *fill, df_err *err) {
  if (df_img_check(src, "affine input", err) || df_img_check(dst, "affine output", err)) return DF_EINVAL;
  if (src->c != dst->c)
    return df_err_set(err, DF_EINVAL, "affine: %d input channels, %d output channels", src->c, dst->c);
  if (filter != DF_FILTER_BILINEAR && filter != DF_FILTER_BICUBIC)
    return df_err_set(err, DF_EINVAL, "affine: unknown filter %d", (int)filter);
  for (int i = 0; i < 6; i++)
    if (!isfinite(m[i])) return df_err_set(err, DF_EINVAL, "affine: coefficient %d is not finite", i);
  const int c = src->c, W = src->w, H = src->h;
  const size_t stride = (size_t)W * c;
  uint8_t fillv[DF_IMG_MAX_CHANNELS] = {0};
  if (fill) memcpy(fillv, fill, (size_t)c);
  for (int y = 0; y < dst->h; y++) {
    uint8_t *out = dst->px + (size_t)y * dst->w * c;
    double yc = y + 0.5;
    for (int x = 0; x < dst->w; x++, out += c) {
      double xc = x + 0.5;
      double xin = m[0] * xc + m[1] * yc + m[2];
      double yin = m[3] * xc + m[4] * yc + m[5];
      if (xin < 0.0 || xin >= W || yin < 0.0 || yin >= H) {
        for (int k = 0; k < c; k++) out[k] = fillv[k];
        continue;
      }
      xin -= 0.5, yin -= 0.5;
      int xi = pil_floor(xin), yi = pil_floor(yin);
      double dx = xin - xi, dy = yin - yi;
      if (filter == DF_FILTER_BILINEAR) {
        int x0 = clampi(xi, 0, W - 1) * c, x1 = clampi(xi + 1, 0, W - 1) * c;
        const uint8_t *r0 = src->px + (size_t)clampi(yi, 0, H - 1) * stride;
        const uint8_t *r1 = src->px + (size_t)clampi(yi + 1, 0, H - 1) * stride;
        for (int k = 0; k < c; k++) {
          double v1 = r0[x0 + k] + (r0[x1 + k] - r0[x0 + k]) * dx;
          double v2 = r1[x0 + k] + (r1[x1 + k] - r1[x0 + k]) * dx;
          double v = v1 + (v2 - v1) * dy;
          out[k] = (uint8_t)v;
        }
      } else {
        xi--, yi--;
        int xs[4];
        const uint8_t *rows[4];
        for (int j = 0; j < 4; j++) {
          xs[j] = clampi(xi + j, 0, W - 1) * c;
          rows[j] = src->px + (size_t)clampi(yi + j, 0, H - 1) * stride;
        }
        /* Shortcuts that are exact: with d == 0 the cubic is p1 + 0 * (...)
        ** = the second sample, so a zero fraction (shears and translations
        ** along one axis, integer offsets) skips that axis's arithmetic. */
        if (dy == 0.0) {
          for (int k = 0; k < c; k++) {
            const uint8_t *r = rows[1] + k;
            double o = dx == 0.0 ? r[xs[1]] : pil_cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
            out[k] = o <= 0.0 ? 0 : o >= 255.0 ? 255 : (uint8_t)o;
          }
          continue;
        }
        if (dx == 0.0) {
          for (int k = 0; k < c; k++) {
            double o = pil_cubic(rows[0][xs[1] + k], rows[1][xs[1] + k], rows[2][xs[1] + k],
                                 rows[3][xs[1] + k], dy);
            out[k] = o <= 0.0 ? 0 : o >= 255.0 ? 255 : (uint8_t)o;
          }
          continue;
        }
        for (int k = 0; k < c; k++) {
          double v[4];
          for (int j = 0; j < 4; j++) {
            const uint8_t *r = rows[j] + k;
            v[j] = pil_cubic(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
          }
          double o = pil_cubic(v[0], v[1], v[2], v[3], dy);
          out[k] = o <= 0.0 ? 0 : o >= 255.0 ? 255 : (uint8_t)o;
        }
      }
    }
  }
  return 0;
}

/* ---------------------------------------------------------- normalisation */

int df_img_normalize(const df_img *src, df_imgf *dst, const float *mean, const float *std,
                     df_err *err) {
  if (df_img_check(src, "normalize input", err) || df_imgf_check(dst, "normalize output", err))
    return DF_EINVAL;
  if (dst->h != src->h || dst->w != src->w || dst->c != src->c)
    return df_err_set(err, DF_EINVAL, "normalize: output %dx%dx%d for input %dx%dx%d", dst->h,
                      dst->w, dst->c, src->h, src->w, src->c);
  const int c = src->c;
  float mu[DF_IMG_MAX_CHANNELS], sd[DF_IMG_MAX_CHANNELS];
  for (int k = 0; k < c; k++) {
    mu[k] = mean[k], sd[k] = std[k];
    if (!(sd[k] != 0) || !isfinite(sd[k]) || !isfinite(mu[k]))
      return df_err_set(err, DF_EINVAL, "normalize: bad mean/std for channel %d", k);
  }
  /* u8 input: one table of 256 values per channel, each computed by the
  ** formula above, so the result is the same and no division is per pixel */
  float lut[DF_IMG_MAX_CHANNELS][256];
  for (int k = 0; k < c; k++)
    for (int v = 0; v < 256; v++) lut[k][v] = ((float)v / 255.0f - mu[k]) / sd[k];
  size_t n = (size_t)src->h * src->w;
  const uint8_t *in = src->px;
  float *out = dst->px;
  if (c == 3) {
    for (size_t i = 0; i < n; i++) {
      out[3 * i + 0] = lut[0][in[3 * i + 0]];
      out[3 * i + 1] = lut[1][in[3 * i + 1]];
      out[3 * i + 2] = lut[2][in[3 * i + 2]];
    }
  } else {
    for (size_t i = 0; i < n; i++)
      for (int k = 0; k < c; k++) out[c * i + k] = lut[k][in[c * i + k]];
  }
  return 0;
}

void df_imgf_to_planar(const df_imgf *src, float *dst, int64_t plane_stride) {
  const int c = src->c;
  size_t n = (size_t)src->h * src->w;
  for (int k = 0; k < c; k++) {
    float *o = dst + (size_t)k * (size_t)plane_stride;
    const float *in = src->px + k;
    for (size_t i = 0; i < n; i++) o[i] = in[i * c];
  }
}

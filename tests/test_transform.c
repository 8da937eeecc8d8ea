/*
** test_transform.c -- the data pipeline's compute side: rng, image ops and
** resampling, RandAugment ops, crop / erase / multi-scale-crop / test-view
** draws, masks, mixup and metrics.  Expected values are worked out by hand
** from each op's definition (PIL's, torch's, timm's); the derivation is in
** the comment above each array.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/augment.h"
#include "runtime/image.h"
#include "runtime/masking.h"
#include "runtime/metrics.h"
#include "runtime/mixup.h"
#include "runtime/rng.h"
#include "tests/check.h"

/* ------------------------------------------------------------ helpers */

/* 2 x 3 RGB test image A (HWC). */
static const uint8_t IMG_A[18] = {10, 200, 30, 50, 60, 70, 90, 100, 250,
                                  0,  20,  40, 130, 140, 150, 255, 128, 5};

static df_img img_of(uint8_t *buf, const uint8_t *src, int h, int w, int c) {
  memcpy(buf, src, (size_t)h * w * c);
  return df_img_view(buf, h, w, c);
}

static int same_bytes(const uint8_t *a, const uint8_t *b, size_t n) { return memcmp(a, b, n) == 0; }

/* A grey image (every channel equal) from one value per pixel. */
static df_img grey_of(uint8_t *buf, const uint8_t *v, int h, int w) {
  for (int i = 0; i < h * w; i++) buf[3 * i] = buf[3 * i + 1] = buf[3 * i + 2] = v[i];
  return df_img_view(buf, h, w, 3);
}

static int grey_is(const df_img *img, const uint8_t *v) {
  for (int i = 0; i < img->h * img->w; i++)
    for (int k = 0; k < 3; k++)
      if (img->px[3 * i + k] != v[i]) return 0;
  return 1;
}

/* --------------------------------------------------------------- rng */

static void test_rng_determinism(void) {
  df_rng a = df_rng_make(42), b = df_rng_make(42), c = df_rng_make(43);
  int differ = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t x = df_rng_u64(&a), y = df_rng_u64(&b), z = df_rng_u64(&c);
    CHECK(x == y);
    differ += x != z;
  }
  CHECK(differ == 100);
  /* counter-based: draw n of a stream depends only on (seed, n) */
  df_rng r = df_rng_make(7);
  for (int i = 0; i < 10; i++) df_rng_u64(&r);
  df_rng s = {7, 10};
  CHECK(df_rng_u64(&r) == df_rng_u64(&s));
  /* streams: deterministic, distinct per id and per seed */
  CHECK(df_rng_derive(5, 1) == df_rng_derive(5, 1));
  CHECK(df_rng_derive(5, 1) != df_rng_derive(5, 2));
  CHECK(df_rng_derive(5, 1) != df_rng_derive(6, 1));
  df_rng s1 = df_rng_stream(5, 1), s2 = df_rng_stream(5, 2);
  CHECK(df_rng_u64(&s1) != df_rng_u64(&s2));
  /* a copy replays */
  df_rng u = df_rng_make(99), v = u;
  CHECK(df_rng_uniform(&u) == df_rng_uniform(&v));
}

static void test_rng_uniform_normal_stats(void) {
  df_rng r = df_rng_make(1);
  const int n = 200000;
  double s = 0, s2 = 0, lo = 1, hi = 0;
  for (int i = 0; i < n; i++) {
    double u = df_rng_uniform(&r);
    s += u, s2 += u * u;
    if (u < lo) lo = u;
    if (u > hi) hi = u;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  CHECK(lo >= 0 && hi < 1);
  CHECK(fabs(mean - 0.5) < 0.005);
  CHECK(fabs(var - 1.0 / 12) < 0.002);
  s = s2 = 0;
  for (int i = 0; i < n; i++) {
    double z = df_rng_normal(&r);
    CHECK(isfinite(z));
    s += z, s2 += z * z;
  }
  mean = s / n, var = s2 / n - mean * mean;
  CHECK(fabs(mean) < 0.01);
  CHECK(fabs(var - 1) < 0.02);
  CHECK(fabs(df_rng_range(&r, 3, 3) - 3) == 0);
}

static void test_rng_below(void) {
  df_rng r = df_rng_make(3);
  CHECK(df_rng_below(&r, 0) == 0);
  CHECK(df_rng_below(&r, 1) == 0);
  const uint64_t ns[] = {2, 3, 7, 1000, (1ull << 63) + 1, UINT64_MAX};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
    for (int i = 0; i < 2000; i++) CHECK(df_rng_below(&r, ns[k]) < ns[k]);
  int counts[6] = {0};
  for (int i = 0; i < 60000; i++) counts[df_rng_below(&r, 6)]++;
  for (int k = 0; k < 6; k++) CHECK(abs(counts[k] - 10000) < 500);
  int seen_lo = 0, seen_hi = 0;
  for (int i = 0; i < 1000; i++) {
    int64_t v = df_rng_randint(&r, -2, 2);
    CHECK(v >= -2 && v <= 2);
    seen_lo |= v == -2, seen_hi |= v == 2;
  }
  CHECK(seen_lo && seen_hi);
  CHECK(df_rng_randint(&r, 5, 5) == 5);
  CHECK(df_rng_randint(&r, 5, 4) == 5);
}

static void test_rng_gamma_beta(void) {
  df_rng r = df_rng_make(11);
  const double shapes[] = {0.8, 1.0, 3.5};
  for (int k = 0; k < 3; k++) {
    double s = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
      double g = df_rng_gamma(&r, shapes[k]);
      CHECK(g >= 0 && isfinite(g));
      s += g;
    }
    CHECK(fabs(s / n - shapes[k]) < 0.03 * shapes[k] + 0.01); /* E = shape */
  }
  double s = 0, s2 = 0;
  const int n = 100000;
  for (int i = 0; i < n; i++) {
    double b = df_rng_beta(&r, 0.8, 0.8);
    CHECK(b >= 0 && b <= 1);
    s += b, s2 += b * b;
  }
  /* Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 1/10.4 for a = 0.8 */
  CHECK(fabs(s / n - 0.5) < 0.005);
  CHECK(fabs(s2 / n - 0.25 - 1 / 10.4) < 0.003);
  s = 0;
  for (int i = 0; i < n; i++) s += df_rng_beta(&r, 2, 5);
  CHECK(fabs(s / n - 2.0 / 7.0) < 0.005);
  CHECK(df_rng_gamma(&r, 0) == 0 && df_rng_gamma(&r, -1) == 0 && df_rng_gamma(&r, NAN) == 0);
  CHECK(df_rng_beta(&r, 0, 1) == 0);
}

/* ------------------------------------------------------------- images */

static void test_img_crop_flip(void) {
  uint8_t buf[18], out[12];
  df_img a = img_of(buf, IMG_A, 2, 3, 3);
  /* inside: 1 row x 2 columns from (1, 1) */
  df_img c = df_img_view(out, 1, 2, 3);
  df_err e = {0};
  CHECK(df_img_crop(&a, 1, 1, &c, &e) == 0);
  const uint8_t want1[6] = {130, 140, 150, 255, 128, 5};
  CHECK(same_bytes(out, want1, 6));
  /* over the edge (PIL pads with 0): 2x2 from (2, -1) */
  c = df_img_view(out, 2, 2, 3);
  CHECK(df_img_crop(&a, 2, -1, &c, &e) == 0);
  const uint8_t want2[12] = {0, 0, 0, 0, 0, 0, 90, 100, 250, 0, 0, 0};
  CHECK(same_bytes(out, want2, 12));
  /* entirely outside */
  CHECK(df_img_crop(&a, 7, 7, &c, &e) == 0);
  const uint8_t zero[12] = {0};
  CHECK(same_bytes(out, zero, 12));
  /* flip */
  df_img_flip_h(&a);
  const uint8_t flipped[18] = {90, 100, 250, 50, 60, 70, 10, 200, 30, 255, 128, 5, 130, 140, 150, 0, 20, 40};
  CHECK(same_bytes(buf, flipped, 18));
  float fb[6] = {1, 2, 3, 4, 5, 6};
  df_imgf f = df_imgf_view(fb, 1, 3, 2);
  df_imgf_flip_h(&f);
  CHECK(fb[0] == 5 && fb[1] == 6 && fb[2] == 3 && fb[3] == 4 && fb[4] == 1 && fb[5] == 2);
  /* channel mismatch and bad sizes are errors */
  df_img bad = df_img_view(out, 2, 2, 1);
  CHECK(df_img_crop(&a, 0, 0, &bad, &e) != 0);
  CHECK_CONTAINS(e.msg, "channels");
  df_err_clear(&e);
  df_img none = df_img_view(NULL, 2, 2, 3);
  CHECK(df_img_crop(&none, 0, 0, &c, &e) != 0);
}

static void test_img_normalize_planar(void) {
  const uint8_t px[6] = {0, 255, 128, 51, 0, 255};
  uint8_t buf[6];
  float f[6], planes[6];
  df_img a = img_of(buf, px, 1, 2, 3);
  df_imgf o = df_imgf_view(f, 1, 2, 3);
  df_err e = {0};
  CHECK(df_img_normalize(&a, &o, DF_IMAGENET_MEAN, DF_IMAGENET_STD, &e) == 0);
  /* (v / 255 - mean) / std: 0 -> -0.485/0.229, 255 -> 0.544/0.224, 128 ->
  ** (0.50196 - 0.406)/0.225, 51 -> (0.2 - 0.485)/0.229 */
  CHECK(fabsf(f[0] - (-0.485f / 0.229f)) < 1e-6f);
  CHECK(fabsf(f[1] - (0.544f / 0.224f)) < 1e-5f);
  CHECK(fabsf(f[2] - ((128.0f / 255.0f - 0.406f) / 0.225f)) < 1e-6f);
  CHECK(fabsf(f[3] - (-1.2445415f)) < 1e-5f);
  CHECK(fabsf(f[4] - (-2.0357143f)) < 1e-5f);
  CHECK(fabsf(f[5] - (2.64f)) < 1e-5f);
  df_imgf_to_planar(&o, planes, 2);
  CHECK(planes[0] == f[0] && planes[1] == f[3] && planes[2] == f[1] && planes[3] == f[4] &&
        planes[4] == f[2] && planes[5] == f[5]);
  float zero_std[3] = {1, 0, 1};
  CHECK(df_img_normalize(&a, &o, DF_IMAGENET_MEAN, zero_std, &e) != 0);
}

/*
** PIL bilinear (triangle, antialiased): 1x4 -> 1x2 has scale 2, support
** 2; output 0 (centre 1.0) reads inputs 0..2 with triangle weights
** 0.75, 0.75, 0.25 -> 3/7, 3/7, 1/7; output 1 (centre 3.0) reads 1..3 with
** 1/7, 3/7, 3/7.  [10, 20, 40, 80] -> 130/7 = 18.6 -> 19, 380/7 = 54.3 -> 54.
** Upscaling 1x2 -> 1x4 (support 1): centres 0.25, 0.75, 1.25, 1.75 ->
** weights [1], [.75 .25], [.25 .75], [1]: [0, 100] -> [0, 25, 75, 100].
** Vertically the same numbers.
*/
static void test_resize_pil_bilinear(void) {
  uint8_t ib[12], ob[12];
  df_err e = {0};
  const uint8_t row[4] = {10, 20, 40, 80}, want[2] = {19, 54};
  df_img in = grey_of(ib, row, 1, 4), out = df_img_view(ob, 1, 2, 3);
  CHECK(df_img_resize(&in, &out, DF_RESIZE_PIL_BILINEAR, &e) == 0);
  CHECK(grey_is(&out, want));
  in = grey_of(ib, row, 4, 1), out = df_img_view(ob, 2, 1, 3);
  CHECK(df_img_resize(&in, &out, DF_RESIZE_PIL_BILINEAR, &e) == 0);
  CHECK(grey_is(&out, want));
  const uint8_t two[2] = {0, 100}, up[4] = {0, 25, 75, 100};
  in = grey_of(ib, two, 1, 2), out = df_img_view(ob, 1, 4, 3);
  CHECK(df_img_resize(&in, &out, DF_RESIZE_PIL_BILINEAR, &e) == 0);
  CHECK(grey_is(&out, up));
  /* the same size is the identity */
  uint8_t a[18], o[18];
  df_img ia = img_of(a, IMG_A, 2, 3, 3), oa = df_img_view(o, 2, 3, 3);
  CHECK(df_img_resize(&ia, &oa, DF_RESIZE_PIL_BILINEAR, &e) == 0);
  CHECK(same_bytes(o, IMG_A, 18));
  CHECK(df_img_resize(&ia, &oa, DF_RESIZE_PIL_BICUBIC, &e) == 0);
  CHECK(same_bytes(o, IMG_A, 18));
  /* a plan over a sub-rectangle reads only inside it (a crop, then resize) */
  df_box r = {1, 0, 2, 2};
  df_resize *p = df_resize_new(r, 1, 1, DF_RESIZE_PIL_BILINEAR, &e);
  CHECK(p != NULL);
  uint8_t one[3];
  df_img o1 = df_img_view(one, 1, 1, 3);
  CHECK(df_resize_u8(p, &ia, &o1, &e) == 0);
  /* 2x2 -> 1x1: every weight 1/2 per axis: mean of (50,90,130,255) = 131.25,
  ** of (60,100,140,128) = 107, of (70,250,150,5) = 118.75; each pass rounds:
  ** rows (50+90)/2 = 70, (130+255)/2 = 192.5 -> 193; then (70+193)/2 = 131.5 -> 132 */
  CHECK(one[0] == 132);
  CHECK(one[1] == 107);
  df_resize_free(p);
  /* rectangles outside the image are errors */
  df_box far = {2, 0, 2, 2};
  p = df_resize_new(far, 1, 1, DF_RESIZE_PIL_BILINEAR, &e);
  CHECK(p && df_resize_u8(p, &ia, &o1, &e) != 0);
  CHECK_CONTAINS(e.msg, "does not fit");
  df_resize_free(p);
}

/*
** PIL bicubic (Keys a = -0.5, antialiased): 1x2 -> 1x4, support 2.  Output
** 0 (centre 0.25) reads inputs 0, 1 at distances 0.25, 1.25: kernel
** 0.8671875 and -0.0703125, normalised by their sum 0.796875 to 1.0882,
** -0.0882; output 1 (centre 0.75): distances 0.25, 0.75: 0.8671875 and
** 0.2265625 -> 0.7929, 0.2071.  [100, 0] -> 108.8 -> 109, 79.3 -> 79,
** 20.7 -> 21, -8.8 -> 0 (clipped).
*/
static void test_resize_pil_bicubic(void) {
  uint8_t ib[6], ob[12];
  df_err e = {0};
  const uint8_t two[2] = {100, 0}, want[4] = {109, 79, 21, 0};
  df_img in = grey_of(ib, two, 1, 2), out = df_img_view(ob, 1, 4, 3);
  CHECK(df_img_resize(&in, &out, DF_RESIZE_PIL_BICUBIC, &e) == 0);
  CHECK(grey_is(&out, want));
  /* float path: the same weights without rounding: 108.8235, 79.2857 */
  float fi[2] = {100, 0}, fo[4];
  df_imgf a = df_imgf_view(fi, 1, 2, 1), b = df_imgf_view(fo, 1, 4, 1);
  CHECK(df_imgf_resize(&a, &b, DF_RESIZE_PIL_BICUBIC, &e) == 0);
  CHECK(fabsf(fo[0] - 100.0f * 0.8671875f / 0.796875f) < 1e-3f);
  CHECK(fabsf(fo[1] - 100.0f * 0.8671875f / 1.09375f) < 1e-3f);
  CHECK(fabsf(fo[3] - (-100.0f * 0.0703125f / 0.796875f)) < 1e-3f);
}

/*
** torch bilinear, align_corners=False, no antialias: source x =
** (x' + 0.5) * in/out - 0.5, clamped at 0; two taps.  1x4 -> 1x2: sources
** 0.5 and 2.5 -> [15, 60] (PIL's antialiased result was [19, 54]).
** 2x2 -> 3x3: sources -1/6 -> 0, 0.5, 7/6 -> last pixel:
** [[0, 60], [120, 180]] -> rows [0 30 60] [60 90 120] [120 150 180].
*/
static void test_resize_linear(void) {
  df_err e = {0};
  float a[4] = {10, 20, 40, 80}, b[2];
  df_imgf in = df_imgf_view(a, 1, 4, 1), out = df_imgf_view(b, 1, 2, 1);
  CHECK(df_imgf_resize(&in, &out, DF_RESIZE_LINEAR, &e) == 0);
  CHECK(b[0] == 15 && b[1] == 60);
  float c[4] = {0, 60, 120, 180}, d[9];
  in = df_imgf_view(c, 2, 2, 1), out = df_imgf_view(d, 3, 3, 1);
  CHECK(df_imgf_resize(&in, &out, DF_RESIZE_LINEAR, &e) == 0);
  const float want[9] = {0, 30, 60, 60, 90, 120, 120, 150, 180};
  for (int i = 0; i < 9; i++) CHECK(fabsf(d[i] - want[i]) < 1e-4f);
  /* 1x2 -> 1x4: sources -0.25 -> 0, 0.25, 0.75, 1.25 -> last: [0, 25, 75, 100] */
  float f[2] = {0, 100}, g[4];
  in = df_imgf_view(f, 1, 2, 1), out = df_imgf_view(g, 1, 4, 1);
  CHECK(df_imgf_resize(&in, &out, DF_RESIZE_LINEAR, &e) == 0);
  CHECK(g[0] == 0 && g[1] == 25 && g[2] == 75 && g[3] == 100);
  /* u8 through the same weights, rounded */
  uint8_t ub[12], uo[6];
  const uint8_t row[4] = {10, 20, 40, 81}, w8[2] = {15, 61};
  df_img ui = grey_of(ub, row, 1, 4), uout = df_img_view(uo, 1, 2, 3);
  CHECK(df_img_resize(&ui, &uout, DF_RESIZE_LINEAR, &e) == 0);
  CHECK(grey_is(&uout, w8)); /* (40 + 81) / 2 = 60.5 -> 61 */
  df_box bad = {0, 0, 0, 3};
  CHECK(df_resize_new(bad, 2, 2, DF_RESIZE_LINEAR, &e) == NULL);
  CHECK_CONTAINS(e.msg, "source rectangle");
}

/*
** PIL affine: output (x, y) samples input (x + .5 + 0.5, y + .5): a shift
** by half a pixel.  Row [10, 21, 40]: bilinear at 1.0 and 2.0 (pixel
** coordinates) -> (10+21)/2 = 15.5 -> 15 and 30.5 -> 30 (PIL truncates);
** 3.0 falls outside -> fill 128.  Bicubic (a = -1) at x = 0.5 between
** samples [10 10 21 40] (left edge clamped): 10 + .5(11 + .5(-19 + .5*19))
** = 13.125 -> 13; at 1.5 between [10 21 40 40]: 31.875 -> 31.
*/
static void test_affine(void) {
  uint8_t ib[9], ob[9];
  df_err e = {0};
  const uint8_t row[3] = {10, 21, 40}, fill[3] = {128, 128, 128};
  const uint8_t bil[3] = {15, 30, 128}, cub[3] = {13, 31, 128};
  df_img in = grey_of(ib, row, 1, 3), out = df_img_view(ob, 1, 3, 3);
  const double m[6] = {1, 0, 0.5, 0, 1, 0};
  CHECK(df_img_affine(&in, &out, m, DF_FILTER_BILINEAR, fill, &e) == 0);
  CHECK(grey_is(&out, bil));
  CHECK(df_img_affine(&in, &out, m, DF_FILTER_BICUBIC, fill, &e) == 0);
  CHECK(grey_is(&out, cub));
  /* the identity matrix samples pixel centres exactly */
  uint8_t a[18], o[18];
  df_img ia = img_of(a, IMG_A, 2, 3, 3), oa = df_img_view(o, 2, 3, 3);
  const double id[6] = {1, 0, 0, 0, 1, 0};
  CHECK(df_img_affine(&ia, &oa, id, DF_FILTER_BICUBIC, fill, &e) == 0);
  CHECK(same_bytes(o, IMG_A, 18));
  const double inf[6] = {1, 0, INFINITY, 0, 1, 0};
  CHECK(df_img_affine(&ia, &oa, inf, DF_FILTER_BICUBIC, fill, &e) != 0);
}

/* ------------------------------------------------------- RandAugment ops */

static void test_op_invert_posterize_solarize(void) {
  uint8_t b[18];
  df_img a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_invert(&a);
  for (int i = 0; i < 18; i++) CHECK(b[i] == 255 - IMG_A[i]);
  /* keep 2 bits: v & 0xC0 */
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_posterize(&a, 2);
  const uint8_t post[18] = {0, 192, 0, 0, 0, 64, 64, 64, 192, 0, 0, 0, 128, 128, 128, 192, 128, 0};
  CHECK(same_bytes(b, post, 18));
  /* 0 bits: black; 8 bits: unchanged */
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_posterize(&a, 0);
  for (int i = 0; i < 18; i++) CHECK(b[i] == 0);
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_posterize(&a, 8);
  CHECK(same_bytes(b, IMG_A, 18));
  /* threshold 128: v >= 128 -> 255 - v */
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_solarize(&a, 128);
  const uint8_t sol[18] = {10, 55, 30, 50, 60, 70, 90, 100, 5, 0, 20, 40, 125, 115, 105, 0, 127, 5};
  CHECK(same_bytes(b, sol, 18));
  /* threshold 256 (magnitude 0): unchanged */
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_solarize(&a, 256);
  CHECK(same_bytes(b, IMG_A, 18));
  /* SolarizeAdd 77: v < 128 -> min(255, v + 77) */
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_solarize_add(&a, 77, 128);
  const uint8_t sadd[18] = {87, 200, 107, 127, 137, 147, 167, 177, 250, 77, 97, 117, 130, 140, 150, 255, 128, 82};
  CHECK(same_bytes(b, sadd, 18));
}

/*
** AutoContrast per channel: R spans 0..255 -> unchanged; G spans 20..200:
** int((v - 20) * 255/180) -> 200:255 60:56 100:113 20:0 140:170 128:153;
** B spans 5..250: int((v - 5) * 255/245) -> 30:26 70:67 250:255 40:36
** 150:150 5:0.
*/
static void test_op_autocontrast(void) {
  uint8_t b[18];
  df_img a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_autocontrast(&a);
  const uint8_t want[18] = {10, 255, 26, 50, 56, 67, 90, 113, 255, 0, 0, 36, 130, 170, 150, 255, 153, 0};
  CHECK(same_bytes(b, want, 18));
  /* a constant channel is left alone */
  uint8_t g[12];
  const uint8_t flat[4] = {9, 9, 9, 9};
  df_img f = grey_of(g, flat, 2, 2);
  df_aug_autocontrast(&f);
  CHECK(grey_is(&f, flat));
}

/*
** Equalize on 512 pixels: 256 of value 10, 255 of 20, 1 of 30.  step =
** (512 - 1) // 255 = 2; lut[i] = (1 + count below i) // 2: 10 -> 1//2 = 0,
** 20 -> 257//2 = 128, 30 -> 512//2 = 256, clipped to 255.  Fewer than two
** distinct values, or a tiny image (step 0), leave it unchanged.
*/
static void test_op_equalize(void) {
  uint8_t *b = malloc(512 * 3);
  uint8_t v[512];
  for (int i = 0; i < 512; i++) v[i] = i < 256 ? 10 : i < 511 ? 20 : 30;
  df_img a = grey_of(b, v, 32, 16);
  df_aug_equalize(&a);
  for (int i = 0; i < 512; i++) v[i] = i < 256 ? 0 : i < 511 ? 128 : 255;
  CHECK(grey_is(&a, v));
  free(b);
  uint8_t s[18];
  df_img small = img_of(s, IMG_A, 2, 3, 3);
  df_aug_equalize(&small);
  CHECK(same_bytes(s, IMG_A, 18));
}

/*
** The ImageEnhance blends, out = deg + f (img - deg) in float, truncated
** (clipped to 0..255 when f is outside [0, 1]).
** Color: deg = PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 =
** 124 58 114 16 138 152 for the six pixels; f 0.5 on (10,200,30):
** 124 + .5(-114, 76, -94) = 67 162 77; f 1.5: -47 -> 0, 238, -17 -> 0.
** Contrast: deg = int(mean L + .5) = int(602/6 + .5) = 100; f .5 on 10 ->
** 55, on 250 -> 175.
** Brightness: deg = 0: f .5 truncates 255 -> 127, 5 -> 2; f 1.9 (1.9f):
** 10 -> 19, 30 -> 57, 140 -> 266 -> 255.
*/
static void test_op_enhance(void) {
  uint8_t b[18];
  df_err e = {0};
  df_img a = img_of(b, IMG_A, 2, 3, 3);
  CHECK(df_aug_color(&a, 0.5, &e) == 0);
  const uint8_t col05[18] = {67, 162, 77, 54, 59, 64, 102, 107, 182, 8, 18, 28, 134, 139, 144, 203, 140, 78};
  CHECK(same_bytes(b, col05, 18));
  a = img_of(b, IMG_A, 2, 3, 3);
  CHECK(df_aug_color(&a, 1.5, &e) == 0);
  const uint8_t col15[18] = {0, 238, 0, 46, 61, 76, 78, 93, 255, 0, 22, 52, 126, 141, 156, 255, 116, 0};
  CHECK(same_bytes(b, col15, 18));
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_contrast(&a, 0.5);
  const uint8_t con05[18] = {55, 150, 65, 75, 80, 85, 95, 100, 175, 50, 60, 70, 115, 120, 125, 177, 114, 52};
  CHECK(same_bytes(b, con05, 18));
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_contrast(&a, 1.5);
  const uint8_t con15[18] = {0, 250, 0, 25, 40, 55, 85, 100, 255, 0, 0, 10, 145, 160, 175, 255, 142, 0};
  CHECK(same_bytes(b, con15, 18));
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_brightness(&a, 0.5);
  const uint8_t br05[18] = {5, 100, 15, 25, 30, 35, 45, 50, 125, 0, 10, 20, 65, 70, 75, 127, 64, 2};
  CHECK(same_bytes(b, br05, 18));
  a = img_of(b, IMG_A, 2, 3, 3);
  df_aug_brightness(&a, 1.9);
  const uint8_t br19[18] = {19, 255, 57, 95, 114, 133, 171, 190, 255, 0, 38, 76, 247, 255, 255, 255, 243, 9};
  CHECK(same_bytes(b, br19, 18));
  /* factor 1 is the identity for every enhance op */
  a = img_of(b, IMG_A, 2, 3, 3);
  CHECK(df_aug_color(&a, 1.0, &e) == 0);
  df_aug_contrast(&a, 1.0);
  df_aug_brightness(&a, 1.0);
  CHECK(same_bytes(b, IMG_A, 18));
  /* Color needs RGB */
  uint8_t g[4] = {1, 2, 3, 4};
  df_img grey1 = df_img_view(g, 2, 2, 1);
  CHECK(df_aug_color(&grey1, 0.5, &e) != 0);
  CHECK_CONTAINS(e.msg, "3 channels");
}

/*
** Sharpness on a 3x3 black image with a 130 centre: PIL's SMOOTH gives the
** centre 0.5 + 130 * 5/13 = 50.5 -> 50 and copies the border; blend with
** f 2: 50 + 2 * 80 = 210; f 0.5: 90.  Border pixels stay 0.
*/
static void test_op_sharpness(void) {
  uint8_t b[27], t[27];
  uint8_t v[9] = {0, 0, 0, 0, 130, 0, 0, 0, 0};
  df_err e = {0};
  df_img a = grey_of(b, v, 3, 3), tmp = df_img_view(t, 3, 3, 3);
  CHECK(df_aug_sharpness(&a, 2.0, &tmp, &e) == 0);
  v[4] = 210;
  CHECK(grey_is(&a, v));
  v[4] = 130;
  a = grey_of(b, v, 3, 3);
  CHECK(df_aug_sharpness(&a, 0.5, &tmp, &e) == 0);
  v[4] = 90;
  CHECK(grey_is(&a, v));
  /* under 3x3 the smoothed image is a copy: any factor is the identity */
  uint8_t s[18], st[18];
  df_img small = img_of(s, IMG_A, 2, 3, 3), stmp = df_img_view(st, 2, 3, 3);
  CHECK(df_aug_sharpness(&small, 1.9, &stmp, &e) == 0);
  CHECK(same_bytes(s, IMG_A, 18));
}

/*
** Geometric ops (bicubic, fill 128), through df_aug_op_apply:
** ShearX 1.0 on two rows [10 21 40]: row 0 samples x + 1.0, as the
** half-pixel shift above -> [13 31 fill]; row 1 samples x + 2.0 -> x = 0
** between [10 21 40 40] at 1.5 -> 31, then fill.  TranslateYRel 1/3 of 3
** rows = 1 row: row y takes row y + 1, the last row is fill.  Rotate 90 on
** a square is PIL's transpose (counter-clockwise): out(x, y) = in(w-1-y, x).
** Rotate 30 on a uniform 5x5: the four corners fall outside (fill), the rest
** stays 200 (the a = -1 cubic of a constant is the constant).
*/
static void test_op_geometric(void) {
  df_err e = {0};
  uint8_t ib[18], tb[18];
  const uint8_t rows[6] = {10, 21, 40, 10, 21, 40}, want[6] = {13, 31, 128, 31, 128, 128};
  df_img a = grey_of(ib, rows, 2, 3), tmp = df_img_view(tb, 2, 3, 3);
  CHECK(df_aug_op_apply(DF_AUG_SHEAR_X, 1.0, &a, &tmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(grey_is(&a, want));
  /* ShearY is ShearX transposed */
  uint8_t cb[18], ct[18];
  const uint8_t cols[6] = {10, 10, 21, 21, 40, 40}, wantc[6] = {13, 31, 31, 128, 128, 128};
  df_img c = grey_of(cb, cols, 3, 2), ctmp = df_img_view(ct, 3, 2, 3);
  CHECK(df_aug_op_apply(DF_AUG_SHEAR_Y, 1.0, &c, &ctmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(grey_is(&c, wantc));
  const uint8_t col3[3] = {5, 6, 7}, shifted[3] = {6, 7, 128};
  uint8_t yb[9], yt[9];
  df_img y = grey_of(yb, col3, 3, 1), yt_ = df_img_view(yt, 3, 1, 3);
  CHECK(df_aug_op_apply(DF_AUG_TRANSLATE_Y_REL, 1.0 / 3.0, &y, &yt_, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(grey_is(&y, shifted));
  y = grey_of(yb, col3, 1, 3);
  yt_ = df_img_view(yt, 1, 3, 3);
  CHECK(df_aug_op_apply(DF_AUG_TRANSLATE_X_REL, -1.0 / 3.0, &y, &yt_, 128, DF_FILTER_BICUBIC, &e) == 0);
  const uint8_t right[3] = {128, 5, 6};
  CHECK(grey_is(&y, right));
  /* rotate 90, 180 and 0 */
  uint8_t sq[27], so[27];
  for (int i = 0; i < 27; i++) sq[i] = (uint8_t)i;
  df_img s = df_img_view(sq, 3, 3, 3), o = df_img_view(so, 3, 3, 3);
  CHECK(df_aug_rotate(&s, &o, 90, DF_FILTER_BICUBIC, NULL, &e) == 0);
  const uint8_t r90[27] = {6, 7, 8, 15, 16, 17, 24, 25, 26, 3, 4, 5, 12, 13, 14,
                           21, 22, 23, 0, 1, 2, 9, 10, 11, 18, 19, 20};
  CHECK(same_bytes(so, r90, 27));
  CHECK(df_aug_rotate(&s, &o, -180, DF_FILTER_BICUBIC, NULL, &e) == 0);
  for (int p = 0; p < 9; p++)
    for (int k = 0; k < 3; k++) CHECK(so[p * 3 + k] == sq[(8 - p) * 3 + k]);
  CHECK(df_aug_rotate(&s, &o, 720, DF_FILTER_BICUBIC, NULL, &e) == 0);
  CHECK(same_bytes(so, sq, 27));
  uint8_t ub[75], ut[75], uv[25];
  memset(uv, 200, 25);
  df_img u = grey_of(ub, uv, 5, 5), utmp = df_img_view(ut, 5, 5, 3);
  CHECK(df_aug_op_apply(DF_AUG_ROTATE, 30, &u, &utmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  uv[0] = uv[4] = uv[20] = uv[24] = 128;
  CHECK(grey_is(&u, uv));
  /* same buffer in and out is refused */
  CHECK(df_aug_rotate(&s, &s, 10, DF_FILTER_BICUBIC, NULL, &e) != 0);
  CHECK_CONTAINS(e.msg, "share pixels");
}

/* --------------------------------------------------------- RandAugment */

static void test_randaugment_draw(void) {
  df_aug_ra_config cfg;
  df_aug_ra_default(&cfg);
  CHECK(cfg.num_ops == 4 && cfg.magnitude == 7 && cfg.magnitude_std == 0.5 && cfg.prob == 0.5 &&
        cfg.increasing && cfg.fill == 128 && cfg.filter == DF_FILTER_BICUBIC);
  df_aug_ra_config parsed;
  df_err e = {0};
  CHECK(df_aug_ra_parse("rand-m7-n4-mstd0.5-inc1", &parsed, &e) == 0);
  CHECK(parsed.num_ops == 4 && parsed.magnitude == 7 && parsed.magnitude_std == 0.5 && parsed.increasing);
  CHECK(df_aug_ra_parse("rand-m9-n2", &parsed, &e) == 0);
  CHECK(parsed.num_ops == 2 && parsed.magnitude == 9 && parsed.magnitude_std == 0 && !parsed.increasing);
  CHECK(df_aug_ra_parse("rand-m9-x3", &parsed, &e) != 0);
  CHECK_CONTAINS(e.msg, "unknown key 'x'");
  df_err_clear(&e);
  CHECK(df_aug_ra_parse("auto-m9", &parsed, &e) != 0);
  CHECK_CONTAINS(e.msg, "'auto-m9'");
  int seen[DF_AUG_COUNT] = {0}, applied = 0, total = 0;
  for (uint64_t s = 0; s < 3000; s++) {
    df_rng r = df_rng_make(s);
    df_aug_ra_params p;
    CHECK(df_aug_ra_draw(&r, &cfg, &p, &e) == 0);
    CHECK(p.n == 4);
    for (int i = 0; i < p.n; i++) {
      const df_aug_ra_step *st = &p.step[i];
      seen[st->op]++;
      total++;
      if (!st->applied) continue;
      applied++;
      CHECK(st->magnitude >= 0 && st->magnitude <= 10);
      double m = st->magnitude, a = st->arg;
      switch (st->op) {
        case DF_AUG_ROTATE: CHECK(fabs(fabs(a) - 3 * m) < 1e-9); break;
        case DF_AUG_POSTERIZE_INC: CHECK(a == 4 - (int)(m * 0.4)); break;
        case DF_AUG_SOLARIZE_INC: CHECK(a == 256 - (int)(m / 10 * 256)); break;
        case DF_AUG_SOLARIZE_ADD: CHECK(a == (int)(m / 10 * 110)); break;
        case DF_AUG_COLOR_INC: case DF_AUG_CONTRAST_INC: case DF_AUG_BRIGHTNESS_INC:
        case DF_AUG_SHARPNESS_INC: CHECK(fabs(fabs(a - 1) - 0.09 * m) < 1e-9); break;
        case DF_AUG_SHEAR_X: case DF_AUG_SHEAR_Y: CHECK(fabs(fabs(a) - 0.03 * m) < 1e-9); break;
        case DF_AUG_TRANSLATE_X_REL: case DF_AUG_TRANSLATE_Y_REL: CHECK(fabs(fabs(a) - 0.045 * m) < 1e-9); break;
        default: break;
      }
    }
  }
  /* the 15 increasing ops all appear, the plain variants never */
  for (int k = 0; k < DF_AUG_POSTERIZE; k++) CHECK(seen[k] > 400);
  for (int k = DF_AUG_POSTERIZE; k < DF_AUG_COUNT; k++) CHECK(seen[k] == 0);
  CHECK(fabs((double)applied / total - 0.5) < 0.02);
}

static void test_randaugment_same_on_every_frame(void) {
  df_aug_ra_config cfg;
  df_aug_ra_default(&cfg);
  cfg.prob = 1.0;
  df_err e = {0};
  uint8_t f0[8 * 8 * 3], tb[8 * 8 * 3];
  for (int i = 0; i < (int)sizeof f0; i++) f0[i] = (uint8_t)(i * 37 + 11);
  int differs = 0;
  for (uint64_t s = 0; s < 50; s++) {
    df_rng r = df_rng_make(s);
    df_aug_ra_params p;
    CHECK(df_aug_ra_draw(&r, &cfg, &p, &e) == 0);
    for (int i = 0; i < 4; i++) CHECK(p.step[i].applied);
    uint8_t a[sizeof f0], b[sizeof f0];
    memcpy(a, f0, sizeof f0), memcpy(b, f0, sizeof f0);
    df_img ia = df_img_view(a, 8, 8, 3), ib = df_img_view(b, 8, 8, 3), t = df_img_view(tb, 8, 8, 3);
    CHECK(df_aug_ra_apply(&p, &ia, &t, &e) == 0);
    CHECK(df_aug_ra_apply(&p, &ib, NULL, &e) == 0);
    CHECK(same_bytes(a, b, sizeof a)); /* one draw, the same result per frame */
    differs += !same_bytes(a, f0, sizeof a);
  }
  CHECK(differs > 40);
}

/* ------------------------------------------------------ crop draws */

static void test_rrc_ranges(void) {
  const double scale[2] = {0.08, 1.0}, ratio[2] = {0.75, 1.3333};
  int fallback = 0;
  for (uint64_t s = 0; s < 4000; s++) {
    df_rng r = df_rng_make(s);
    const int H = 90 + (int)(s % 7) * 10, W = 120;
    df_box b;
    df_aug_rrc_draw(&r, H, W, scale, ratio, &b);
    CHECK(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1 && b.x + b.w <= W && b.y + b.h <= H);
    double area = (double)b.w * b.h / ((double)H * W), asp = (double)b.w / b.h;
    if (b.w == W && b.h == H) fallback++;
    /* rounding w and h to integers moves area and aspect a little */
    CHECK(area >= 0.08 * 0.9 && area <= 1.0);
    CHECK(asp >= 0.75 * (1 - 2.0 / b.h) - 1e-9 && asp <= 1.3333 * (1 + 2.0 / b.h) + 1e-9);
  }
  CHECK(fallback < 400);
  /* impossible areas fall back to a centre crop with the aspect clamped:
  ** 100 wide x 40 high is 2.5 > 1.3333 -> h 40, w round(53.332) = 53 */
  const double huge[2] = {2, 3};
  df_rng r = df_rng_make(1);
  df_box b;
  df_aug_rrc_draw(&r, 40, 100, huge, ratio, &b);
  CHECK(b.h == 40 && b.w == 53 && b.x == 23 && b.y == 0);
  df_aug_rrc_draw(&r, 100, 40, huge, ratio, &b); /* 0.4 < 0.75: w 40, h round(53.33) */
  CHECK(b.w == 40 && b.h == 53 && b.y == 23 && b.x == 0);
  df_aug_rrc_draw(&r, 50, 50, huge, ratio, &b);
  CHECK(b.w == 50 && b.h == 50 && b.x == 0 && b.y == 0);
}

static void test_erase(void) {
  const int H = 16, W = 20, T = 3, C = 3;
  int erased = 0;
  for (uint64_t s = 0; s < 2000; s++) {
    df_rng r = df_rng_make(s);
    df_box b;
    if (!df_aug_erase_draw(&r, H, W, 1.0, 0.02, 1.0 / 3, 0.3, 1 / 0.3, 100, &b)) continue;
    erased++;
    CHECK(b.w < W && b.h < H && b.x >= 0 && b.y >= 0 && b.x + b.w <= W && b.y + b.h <= H);
    double area = (double)b.w * b.h / (H * W);
    CHECK(area >= 0.0 && area <= 1.0 / 3 + 0.07);
    if (b.w > 0 && b.h > 0) {
      double asp = (double)b.h / b.w;
      CHECK(asp >= 0.3 / 2.5 && asp <= 3.34 * 2.5);
    }
  }
  CHECK(erased > 1900);
  int none = 0;
  for (uint64_t s = 0; s < 200; s++) {
    df_rng r = df_rng_make(s);
    df_box b;
    none += !df_aug_erase_draw(&r, H, W, 0.0, 0.02, 1.0 / 3, 0.3, 1 / 0.3, 100, &b);
  }
  CHECK(none == 200);
  /* the same box in every frame, fresh noise per frame, nothing outside */
  float *clip = calloc((size_t)C * T * H * W, sizeof(float));
  df_box b = {3, 2, 5, 4};
  df_rng r = df_rng_make(5);
  df_aug_erase_fill(&r, clip, C, T, H, W, &b);
  int inside_nonzero = 0, outside_nonzero = 0, frames_differ = 0;
  for (int c = 0; c < C; c++)
    for (int t = 0; t < T; t++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          float v = clip[(((size_t)c * T + t) * H + y) * W + x];
          int in = x >= 3 && x < 8 && y >= 2 && y < 6;
          if (in) inside_nonzero += v != 0;
          else outside_nonzero += v != 0;
          if (in && t > 0) frames_differ += v != clip[(((size_t)c * T + t - 1) * H + y) * W + x];
        }
  CHECK(inside_nonzero == C * T * 20);
  CHECK(outside_nonzero == 0);
  CHECK(frames_differ == C * (T - 1) * 20);
  free(clip);
}

/*
** GroupMultiScaleCrop on 200 x 170 (w x h) to 160: base 170; sizes
** int(170 * (1, .875, .75, .66)) = 170, 148, 127, 112: 170 is not within 3
** of 160 and stays.  On 200 x 158: 158 -> 160 (snapped), 138, 118, 104.
** Pairs |i - j| <= 1: 4 + 3 + 3 = 10.  Offsets with w_step = (200 - w)
** // 4, h_step = (h_img - h) // 4 at the 13 positions.
*/
static void test_multiscale_crop(void) {
  const double scales[4] = {1, .875, .75, .66};
  int pairs[32][2];
  int n = df_aug_msc_pairs(200, 170, 160, 160, scales, 4, 1, pairs, 32);
  CHECK(n == 10);
  const int sizes_a[4] = {170, 148, 127, 112};
  for (int i = 0; i < n; i++) {
    int wi = -1, hi = -1;
    for (int k = 0; k < 4; k++) {
      if (pairs[i][0] == sizes_a[k]) wi = k;
      if (pairs[i][1] == sizes_a[k]) hi = k;
    }
    CHECK(wi >= 0 && hi >= 0 && abs(wi - hi) <= 1);
  }
  CHECK(pairs[0][0] == 170 && pairs[0][1] == 170 && pairs[1][0] == 148 && pairs[1][1] == 170);
  n = df_aug_msc_pairs(200, 158, 160, 160, scales, 4, 1, pairs, 32);
  CHECK(n == 10 && pairs[0][0] == 160 && pairs[0][1] == 160 && pairs[1][0] == 138);
  /* the 13 offsets for a 160 x 160 crop of 200 x 170: steps 10 and 2 */
  int off[13][2];
  df_aug_msc_offsets(200, 170, 160, 160, off);
  const int want[13][2] = {{0, 0}, {40, 0}, {0, 8}, {40, 8}, {20, 4}, {0, 4}, {40, 4},
                           {20, 8}, {20, 0}, {10, 2}, {30, 2}, {10, 6}, {30, 6}};
  for (int i = 0; i < 13; i++) CHECK(off[i][0] == want[i][0] && off[i][1] == want[i][1]);
  /* snapped up past the image: negative steps use floor division */
  df_aug_msc_offsets(200, 158, 160, 160, off);
  CHECK(off[2][1] == -4 && off[4][1] == -2); /* (158 - 160) // 4 = -1 */
  /* every position and every pair is drawn */
  int pos_seen[13] = {0}, pair_seen[10] = {0};
  df_err e = {0};
  df_aug_msc_pairs(200, 170, 160, 160, scales, 4, 1, pairs, 32);
  for (uint64_t s = 0; s < 3000; s++) {
    df_rng r = df_rng_make(s);
    df_box b;
    CHECK(df_aug_msc_draw(&r, 200, 170, 160, 160, scales, 4, 1, &b, &e) == 0);
    int pi = -1;
    for (int i = 0; i < 10; i++)
      if (pairs[i][0] == b.w && pairs[i][1] == b.h) pi = i;
    CHECK(pi >= 0);
    if (pi >= 0) pair_seen[pi]++;
    df_aug_msc_offsets(200, 170, b.w, b.h, off);
    int oi = -1;
    for (int i = 0; i < 13; i++)
      if (off[i][0] == b.x && off[i][1] == b.y && oi < 0) oi = i;
    CHECK(oi >= 0);
    /* positions are told apart by index when steps are non-zero */
    if (oi >= 0 && b.w == 112 && b.h == 112) pos_seen[oi]++;
  }
  for (int i = 0; i < 10; i++) CHECK(pair_seen[i] > 0);
  for (int i = 0; i < 13; i++) CHECK(pos_seen[i] > 0);
  const double bad[1] = {1.5};
  df_rng r = df_rng_make(0);
  df_box b;
  CHECK(df_aug_msc_draw(&r, 200, 170, 160, 160, bad, 1, 1, &b, &e) != 0);
  CHECK_CONTAINS(e.msg, "scale 1.5");
}

/*
** Test views on 20 frames of 160 x 213 (after the short-side resize), 2
** segments x 3 crops: t0 = int(seg * (20 - 16) / 1) = 0, 4; crop offsets
** int(k * (213 - 160) / 2) = 0, 26, 53 along the width.
*/
static void test_test_views(void) {
  df_err e = {0};
  int t0;
  df_box b;
  const int starts[2] = {0, 4}, offs[3] = {0, 26, 53};
  for (int seg = 0; seg < 2; seg++)
    for (int c = 0; c < 3; c++) {
      CHECK(df_aug_test_view(20, 160, 213, 16, 160, 2, 3, seg, c, &t0, &b, &e) == 0);
      CHECK(t0 == starts[seg] && b.x == offs[c] && b.y == 0 && b.w == 160 && b.h == 160);
    }
  /* tall frames crop rows; one crop takes the centre; short clips start at 0 */
  CHECK(df_aug_test_view(16, 200, 160, 16, 160, 2, 1, 1, 0, &t0, &b, &e) == 0);
  CHECK(t0 == 0 && b.x == 0 && b.y == 20 && b.w == 160 && b.h == 160);
  int h, w;
  df_img_short_side_size(240, 320, 160, &h, &w);
  CHECK(h == 160 && w == 213);
  df_img_short_side_size(333, 100, 160, &h, &w);
  CHECK(w == 160 && h == 532);
  CHECK(df_aug_test_view(20, 160, 213, 16, 160, 2, 3, 2, 0, &t0, &b, &e) != 0);
  CHECK_CONTAINS(e.msg, "view (2, 0)");
}

/* Parameters no caller should pass still give boxes inside the image. */
static void test_nonsense_params(void) {
  df_rng r = df_rng_make(1);
  const double zero[2] = {0, 0}, nanr[2] = {NAN, NAN}, neg[2] = {-1, -0.5};
  df_box b;
  df_aug_rrc_draw(&r, 10, 12, neg, zero, &b);
  CHECK(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1 && b.x + b.w <= 12 && b.y + b.h <= 10);
  df_aug_rrc_draw(&r, 10, 12, nanr, nanr, &b);
  CHECK(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1 && b.x + b.w <= 12 && b.y + b.h <= 10);
  int got = df_aug_erase_draw(&r, 10, 12, 1.0, -1, 5, 0, -3, 50, &b);
  CHECK(!got || (b.x >= 0 && b.y >= 0 && b.x + b.w <= 12 && b.y + b.h <= 10));
  uint8_t px[12] = {0}, t[12];
  df_img img = df_img_view(px, 2, 2, 3), tmp = df_img_view(t, 2, 2, 3);
  df_err e = {0};
  CHECK(df_aug_op_apply(DF_AUG_POSTERIZE, 1e300, &img, &tmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(df_aug_op_apply(DF_AUG_SOLARIZE_ADD, -1e300, &img, &tmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(df_aug_op_apply(DF_AUG_TRANSLATE_X_REL, 1e300, &img, &tmp, 128, DF_FILTER_BICUBIC, &e) == 0);
  CHECK(px[0] == 128);
  CHECK(df_aug_op_apply(DF_AUG_ROTATE, NAN, &img, &tmp, 128, DF_FILTER_BICUBIC, &e) != 0);
  CHECK_CONTAINS(e.msg, "Rotate: argument is not finite");
  df_aug_ra_config cfg;
  CHECK(df_aug_ra_parse("rand-m99999999999", &cfg, &e) != 0);
}

/* ------------------------------------------------------------ masks */

static void test_mask_tube(void) {
  const int t = 8, h = 10, w = 10;
  uint8_t m[800], m2[800];
  df_err e = {0};
  df_rng r = df_rng_make(9);
  CHECK(df_mask_tube(&r, t, h, w, 0.9, m, &e) == 0);
  for (int f = 0; f < t; f++) {
    int cnt = 0;
    for (int i = 0; i < 100; i++) cnt += m[f * 100 + i];
    CHECK(cnt == 90);
    CHECK(memcmp(m + f * 100, m, 100) == 0);
  }
  r = df_rng_make(9);
  CHECK(df_mask_tube(&r, t, h, w, 0.9, m2, &e) == 0);
  CHECK(memcmp(m, m2, 800) == 0);
  r = df_rng_make(10);
  CHECK(df_mask_tube(&r, t, h, w, 0.9, m2, &e) == 0);
  CHECK(memcmp(m, m2, 800) != 0);
  /* int(0.29 * 100) = 28 in double precision, as Python */
  CHECK(df_mask_count(0.29, 100) == 28);
  CHECK(df_mask_count(0.9, 100) == 90 && df_mask_count(0, 100) == 0 && df_mask_count(1, 100) == 100);
  CHECK(df_mask_tube(&r, 1, 10, 10, 0.29, m2, &e) == 0);
  int cnt = 0;
  for (int i = 0; i < 100; i++) cnt += m2[i];
  CHECK(cnt == 28);
  CHECK(df_mask_tube(&r, t, h, w, 1.5, m2, &e) != 0);
  CHECK_CONTAINS(e.msg, "ratio 1.5");
}

static void test_mask_part_window(void) {
  const int t = 8, h = 10, w = 10;
  uint8_t m[800], m2[800];
  df_err e = {0};
  df_rng r = df_rng_make(4);
  /* the paper's default: (5, 10) windows, 45 of 50 masked, 80 visible */
  CHECK(df_mask_part_window(&r, t, h, w, 5, 10, 0.9, m, &e) == 0);
  int visible = 0;
  for (int i = 0; i < 800; i++) visible += !m[i];
  CHECK(visible == 80);
  for (int f = 0; f < t; f++) CHECK(memcmp(m + f * 100, m, 100) == 0);
  /* windows narrower than the frame: 2 x 5 windows, floor(0.75 * 10) = 7 */
  CHECK(df_mask_part_window(&r, 2, h, w, 2, 5, 0.75, m2, &e) == 0);
  for (int wy = 0; wy < 5; wy++)
    for (int wx = 0; wx < 2; wx++) {
      int cnt = 0;
      for (int y = 0; y < 2; y++)
        for (int x = 0; x < 5; x++) cnt += m2[(wy * 2 + y) * 10 + wx * 5 + x];
      CHECK(cnt == 7);
    }
  CHECK(memcmp(m2, m2 + 100, 100) == 0);
  df_rng a = df_rng_make(77), b = df_rng_make(77), c = df_rng_make(78);
  uint8_t x1[800], x2[800], x3[800];
  CHECK(df_mask_part_window(&a, t, h, w, 5, 10, 0.9, x1, &e) == 0);
  CHECK(df_mask_part_window(&b, t, h, w, 5, 10, 0.9, x2, &e) == 0);
  CHECK(df_mask_part_window(&c, t, h, w, 5, 10, 0.9, x3, &e) == 0);
  CHECK(memcmp(x1, x2, 800) == 0 && memcmp(x1, x3, 800) != 0);
  CHECK(df_mask_part_window(&a, t, h, w, 3, 10, 0.9, x1, &e) != 0);
  CHECK_CONTAINS(e.msg, "window 3x10 does not tile the 10x10");
}

/* ------------------------------------------------------------- mixup */

static void test_mixup_draws(void) {
  df_mix_config cfg;
  df_mix_default(&cfg);
  df_err e = {0};
  int cut = 0;
  for (uint64_t s = 0; s < 2000; s++) {
    df_rng r = df_rng_make(s);
    df_mix_params p;
    CHECK(df_mix_draw(&r, &cfg, 160, 160, &p, &e) == 0);
    CHECK(p.lam >= 0 && p.lam <= 1);
    if (!p.cutmix) continue;
    cut++;
    CHECK(p.y0 >= 0 && p.y0 <= p.y1 && p.y1 <= 160 && p.x0 >= 0 && p.x0 <= p.x1 && p.x1 <= 160);
    /* lam corrected to the clipped box */
    double area = (double)(p.y1 - p.y0) * (p.x1 - p.x0);
    CHECK(fabs(p.lam - (1 - area / (160.0 * 160.0))) < 1e-12);
  }
  CHECK(abs(cut - 1000) < 100);
  /* both alphas off: nothing happens */
  cfg.mixup_alpha = cfg.cutmix_alpha = 0;
  df_rng r = df_rng_make(1);
  df_mix_params p;
  CHECK(df_mix_draw(&r, &cfg, 160, 160, &p, &e) == 0);
  CHECK(p.lam == 1 && !p.cutmix);
}

/*
** Mixup blend, B = 3: sample i with sample 2 - i, lam 0.25:
** x0 = .25 * 1 + .75 * 3 = 2.5, x2 = .25 * 3 + .75 * 1 = 1.5, x1 (its own
** partner) stays 2.  Cutmix swaps the box of 0 and 2 in every plane.
** Targets, K = 3, s = 0.1 (off 1/30, on 0.9 + 1/30), labels {0, 2},
** lam 0.7: row 0 = .7 [on off off] + .3 [off off on] = [0.66333,
** 0.03333, 0.30333]; row 1 mirrors it.
*/
static void test_mixup_apply_targets(void) {
  df_err e = {0};
  float x[3] = {1, 2, 3};
  df_mix_params p = {0, 0.25, 0, 0, 0, 0};
  CHECK(df_mix_apply(&p, x, 3, 1, 1, 1, 1, &e) == 0);
  CHECK(fabsf(x[0] - 2.5f) < 1e-6f && fabsf(x[1] - 2.0f) < 1e-6f && fabsf(x[2] - 1.5f) < 1e-6f);
  /* cutmix: B 3, C 1, T 2, 2 x 3 frames, box rows [1, 2) cols [0, 2) */
  float v[3 * 2 * 6];
  for (int i = 0; i < 36; i++) v[i] = (float)i;
  df_mix_params q = {1, 0.5, 1, 2, 0, 2};
  CHECK(df_mix_apply(&q, v, 3, 1, 2, 2, 3, &e) == 0);
  for (int b = 0; b < 3; b++)
    for (int t = 0; t < 2; t++)
      for (int y = 0; y < 2; y++)
        for (int xx = 0; xx < 3; xx++) {
          int in = y == 1 && xx < 2;
          int src = in ? 2 - b : b;
          CHECK(v[((b * 2 + t) * 2 + y) * 3 + xx] == (float)(((src * 2 + t) * 2 + y) * 3 + xx));
        }
  const int64_t labels[2] = {0, 2};
  float tg[6];
  CHECK(df_mix_targets(0.7, labels, 2, 3, 0.1, tg, &e) == 0);
  const double on = 0.9 + 0.1 / 3, off = 0.1 / 3;
  CHECK(fabs(tg[0] - (0.7 * on + 0.3 * off)) < 1e-6 && fabs(tg[1] - off) < 1e-6 &&
        fabs(tg[2] - (0.7 * off + 0.3 * on)) < 1e-6);
  CHECK(fabs(tg[3] - (0.7 * off + 0.3 * on)) < 1e-6 && fabs(tg[5] - (0.7 * on + 0.3 * off)) < 1e-6);
  for (int b = 0; b < 2; b++) CHECK(fabs(tg[b * 3] + tg[b * 3 + 1] + tg[b * 3 + 2] - 1) < 1e-6);
  const int64_t badl[2] = {0, 3};
  CHECK(df_mix_targets(0.7, badl, 2, 3, 0.1, tg, &e) != 0);
  CHECK_CONTAINS(e.msg, "label 3 of sample 1");
}

/* ----------------------------------------------------------- metrics */

/*
** labels 0 0 1 1 1 2, preds 0 1 1 1 0 1, K = 4 (class 3 absent, class 2
** never predicted).  Confusion rows: [1 1 0 0] [1 2 0 0] [0 1 0 0] [0 0 0 0].
** Recall 1/2, 2/3, 0, (0 absent); UAR over the 3 present = 7/18;
** WAR = 3/6; F1 = 2tp / (2tp + fp + fn): class 0: 2/4, class 1: 4/7,
** class 2: 0; weighted by support 2, 3, 1: (1 + 12/7) / 6 = 19/42.
*/
static void test_metrics(void) {
  const int64_t labels[6] = {0, 0, 1, 1, 1, 2}, preds[6] = {0, 1, 1, 1, 0, 1};
  df_metrics m;
  df_err e = {0};
  CHECK(df_metric_compute(labels, preds, 6, 4, &m, &e) == 0);
  const int64_t conf[16] = {1, 1, 0, 0, 1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  CHECK(memcmp(m.confusion, conf, sizeof conf) == 0);
  CHECK(m.support[0] == 2 && m.support[1] == 3 && m.support[2] == 1 && m.support[3] == 0);
  CHECK(fabs(m.recall[0] - 0.5) < 1e-12 && fabs(m.recall[1] - 2.0 / 3) < 1e-12 && m.recall[2] == 0 &&
        m.recall[3] == 0);
  CHECK(m.present == 3);
  CHECK(fabs(m.uar - 7.0 / 18) < 1e-12);
  CHECK(fabs(m.recall_macro - 7.0 / 18) < 1e-12);
  CHECK(fabs(m.war - 0.5) < 1e-12);
  CHECK(fabs(m.f1 - 19.0 / 42) < 1e-12);
  CHECK(fabs(m.f1_class[1] - 4.0 / 7) < 1e-12);
  df_metric_free(&m);
  /* a class predicted but never true: UAR ignores it, sklearn's macro
  ** recall counts it as 0 */
  const int64_t l2[2] = {0, 1}, p2[2] = {0, 3};
  CHECK(df_metric_compute(l2, p2, 2, 4, &m, &e) == 0);
  CHECK(fabs(m.uar - 0.5) < 1e-12 && fabs(m.recall_macro - 1.0 / 3) < 1e-12 && fabs(m.war - 0.5) < 1e-12);
  /* F1: class 0 = 1, class 1 = 0, class 3 = 0 (support 0); weighted 1/2 */
  CHECK(fabs(m.f1 - 0.5) < 1e-12);
  df_metric_free(&m);
  CHECK(df_metric_compute(l2, p2, 0, 4, &m, &e) == 0);
  CHECK(m.uar == 0 && m.war == 0 && m.f1 == 0);
  df_metric_free(&m);
  const int64_t bad[2] = {0, 5};
  CHECK(df_metric_compute(bad, p2, 2, 4, &m, &e) != 0);
  CHECK_CONTAINS(e.msg, "label 5 of sample 2");
  df_err_clear(&e);
  CHECK(df_metric_compute(l2, bad, 2, 4, &m, &e) != 0);
  CHECK_CONTAINS(e.msg, "prediction 5 of sample 2");
}

int main(void) {
  TEST(test_rng_determinism);
  TEST(test_rng_uniform_normal_stats);
  TEST(test_rng_below);
  TEST(test_rng_gamma_beta);
  TEST(test_img_crop_flip);
  TEST(test_img_normalize_planar);
  TEST(test_resize_pil_bilinear);
  TEST(test_resize_pil_bicubic);
  TEST(test_resize_linear);
  TEST(test_affine);
  TEST(test_op_invert_posterize_solarize);
  TEST(test_op_autocontrast);
  TEST(test_op_equalize);
  TEST(test_op_enhance);
  TEST(test_op_sharpness);
  TEST(test_op_geometric);
  TEST(test_randaugment_draw);
  TEST(test_randaugment_same_on_every_frame);
  TEST(test_rrc_ranges);
  TEST(test_erase);
  TEST(test_multiscale_crop);
  TEST(test_test_views);
  TEST(test_nonsense_params);
  TEST(test_mask_tube);
  TEST(test_mask_part_window);
  TEST(test_mixup_draws);
  TEST(test_mixup_apply_targets);
  TEST(test_metrics);
  return check_exit();
}

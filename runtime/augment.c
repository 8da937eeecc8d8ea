/*
** augment.c -- RandAugment ops (PIL-exact), RandAugment draws, and the
** crop / erase / multi-scale-crop / test-view parameter draws (see
** augment.h).  Photometric ops are lookup tables or one pass over the
** bytes; geometric ops go through df_img_affine().
*/
#include "runtime/augment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
#define X(e, name, sgn) name,
    DF_AUG_OPS(X)
#undef X
};
static const int op_signed[] = {
#define X(e, name, sgn) sgn,
    DF_AUG_OPS(X)
#undef X
};
_Static_assert(sizeof op_names / sizeof op_names[0] == DF_AUG_COUNT, "one name per op");

const char *df_aug_op_name(df_aug_op op) {
  return (unsigned)op < DF_AUG_COUNT ? op_names[op] : "?";
}

/* timm's _RAND_INCREASING_TRANSFORMS and _RAND_TRANSFORMS, in order. */
static const df_aug_op ops_increasing[] = {
    DF_AUG_AUTOCONTRAST, DF_AUG_EQUALIZE,     DF_AUG_INVERT,        DF_AUG_ROTATE,
    DF_AUG_POSTERIZE_INC, DF_AUG_SOLARIZE_INC, DF_AUG_SOLARIZE_ADD, DF_AUG_COLOR_INC,
    DF_AUG_CONTRAST_INC, DF_AUG_BRIGHTNESS_INC, DF_AUG_SHARPNESS_INC, DF_AUG_SHEAR_X,
    DF_AUG_SHEAR_Y,      DF_AUG_TRANSLATE_X_REL, DF_AUG_TRANSLATE_Y_REL};
static const df_aug_op ops_plain[] = {
    DF_AUG_AUTOCONTRAST, DF_AUG_EQUALIZE, DF_AUG_INVERT,     DF_AUG_ROTATE,
    DF_AUG_POSTERIZE,    DF_AUG_SOLARIZE, DF_AUG_SOLARIZE_ADD, DF_AUG_COLOR,
    DF_AUG_CONTRAST,     DF_AUG_BRIGHTNESS, DF_AUG_SHARPNESS, DF_AUG_SHEAR_X,
    DF_AUG_SHEAR_Y,      DF_AUG_TRANSLATE_X_REL, DF_AUG_TRANSLATE_Y_REL};
#define N_RA_OPS 15

/* ------------------------------------------------------ lookup-table ops */

static size_t npix(const df_img *img) { return (size_t)img->h * img->w; }

/* Apply one 256-entry table per channel (lut[k * 256 + v]). */
static void apply_luts(df_img *img, const uint8_t *lut) {
  if (!img || !img->px) return;
  const int c = img->c;
  size_t n = npix(img);
  uint8_t *p = img->px;
  if (c == 3) {
    const uint8_t *l0 = lut, *l1 = lut + 256, *l2 = lut + 512;
    for (size_t i = 0; i < n; i++, p += 3) p[0] = l0[p[0]], p[1] = l1[p[1]], p[2] = l2[p[2]];
  } else {
    for (size_t i = 0; i < n; i++, p += c)
      for (int k = 0; k < c; k++) p[k] = lut[k * 256 + p[k]];
  }
}

/* One LUT shared by every channel. */
static void apply_lut1(df_img *img, const uint8_t lut[256]) {
  if (!img || !img->px) return;
  size_t n = npix(img) * img->c;
  for (size_t i = 0; i < n; i++) img->px[i] = lut[img->px[i]];
}

static void histograms(const df_img *img, int64_t *hist /* c * 256 */) {
  const int c = img->c;
  memset(hist, 0, sizeof(int64_t) * 256 * c);
  size_t n = npix(img);
  const uint8_t *p = img->px;
  for (size_t i = 0; i < n; i++, p += c)
    for (int k = 0; k < c; k++) hist[k * 256 + p[k]]++;
}

/* ImageOps.autocontrast(img) (cutoff 0): per channel, stretch [lo, hi] to
** [0, 255] with lut = int(i * scale + offset) clipped. */
void df_aug_autocontrast(df_img *img) {
  if (!img || !img->px || img->c < 1 || img->c > DF_IMG_MAX_CHANNELS) return;
  int64_t hist[DF_IMG_MAX_CHANNELS * 256];
  uint8_t lut[DF_IMG_MAX_CHANNELS * 256];
  histograms(img, hist);
  for (int k = 0; k < img->c; k++) {
    const int64_t *h = hist + k * 256;
    uint8_t *l = lut + k * 256;
    int lo = 0, hi = 255;
    while (lo < 256 && !h[lo]) lo++;
    while (hi >= 0 && !h[hi]) hi--;
    if (hi <= lo) {
      for (int i = 0; i < 256; i++) l[i] = (uint8_t)i;
      continue;
    }
    double scale = 255.0 / (hi - lo), offset = -lo * scale;
    for (int i = 0; i < 256; i++) {
      double v = i * scale + offset;
      int iv = (int)v; /* Python int(): toward zero */
      l[i] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
    }
  }
  apply_luts(img, lut);
}

/* ImageOps.equalize(img): per channel, step = (total - last nonzero bin)
** // 255 (Pillow 9.x); lut[i] = (step // 2 + count below i) // step (clipped to 255, as
** Image.point clips). */
void df_aug_equalize(df_img *img) {
  if (!img || !img->px || img->c < 1 || img->c > DF_IMG_MAX_CHANNELS) return;
  int64_t hist[DF_IMG_MAX_CHANNELS * 256];
  uint8_t lut[DF_IMG_MAX_CHANNELS * 256];
  histograms(img, hist);
  for (int k = 0; k < img->c; k++) {
    const int64_t *h = hist + k * 256;
    uint8_t *l = lut + k * 256;
    int64_t total = 0, last = 0;
    int nonzero = 0;
    for (int i = 0; i < 256; i++)
      if (h[i]) total += h[i], last = h[i], nonzero++;
    int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
    if (!step) {
      for (int i = 0; i < 256; i++) l[i] = (uint8_t)i;
      continue;
    }
    int64_t n = step / 2;
    for (int i = 0; i < 256; i++) {
      int64_t v = n / step;
      l[i] = (uint8_t)(v > 255 ? 255 : v);
      n += h[i];
    }
  }
  apply_luts(img, lut);
}

void df_aug_invert(df_img *img) {
  uint8_t lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(255 - i);
  apply_lut1(img, lut);
}

void df_aug_posterize(df_img *img, int bits) {
  if (bits >= 8) return;
  if (bits < 0) bits = 0;
  uint8_t lut[256], mask = (uint8_t)(~((1u << (8 - bits)) - 1) & 0xff);
  for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i & mask);
  apply_lut1(img, lut);
}

void df_aug_solarize(df_img *img, int threshold) {
  uint8_t lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i < threshold ? i : 255 - i);
  apply_lut1(img, lut);
}

void df_aug_solarize_add(df_img *img, int add, int threshold) {
  uint8_t lut[256];
  for (int i = 0; i < 256; i++) {
    int v = i < threshold ? i + add : i;
    lut[i] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
  }
  apply_lut1(img, lut);
}

/* ------------------------------------------------------------ enhance ops */

/*
** PIL's ImagingBlend(degenerate, img, alpha) with alpha a float: inside
** [0, 1] the float value is truncated; outside it is clipped to [0, 255]
** first.  alpha 0 and 1 copy.  `deg` has img's layout, or is a constant
** per-pixel triple when deg_const (Contrast) / all zero (Brightness).
*/
static void blend_into(df_img *img, const uint8_t *deg, int deg_mode, uint8_t deg_value,
                       double factor) {
  float alpha = (float)factor;
  size_t n = npix(img) * img->c;
  uint8_t *p = img->px;
  if (alpha == 1.0f) return;
  for (size_t i = 0; i < n; i++) {
    int a = deg_mode ? deg_value : deg[i];
    int b = p[i];
    if (alpha == 0.0f) {
      p[i] = (uint8_t)a;
      continue;
    }
    float t = (float)a + alpha * (float)(b - a);
    if (alpha >= 0 && alpha <= 1.0f) p[i] = (uint8_t)t;
    else p[i] = t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
  }
}

/* PIL's RGB -> L. */
static inline uint8_t luma(const uint8_t *rgb) {
  return (uint8_t)(((uint32_t)rgb[0] * 19595 + (uint32_t)rgb[1] * 38470 + (uint32_t)rgb[2] * 7471 +
                    0x8000) >> 16);
}

/* ImageEnhance.Color: blend with the image's greyscale (L -> RGB). */
int df_aug_color(df_img *img, double factor, df_err *err) {
  if (df_img_check(img, "Color", err)) return DF_EINVAL;
  if (img->c != 3) return df_err_set(err, DF_EINVAL, "Color: needs 3 channels (RGB), got %d", img->c);
  float alpha = (float)factor;
  if (alpha == 1.0f) return 0;
  size_t n = npix(img);
  uint8_t *p = img->px;
  for (size_t i = 0; i < n; i++, p += 3) {
    int g = luma(p);
    for (int k = 0; k < 3; k++) {
      int b = p[k];
      if (alpha == 0.0f) {
        p[k] = (uint8_t)g;
        continue;
      }
      float t = (float)g + alpha * (float)(b - g);
      if (alpha >= 0 && alpha <= 1.0f) p[k] = (uint8_t)t;
      else p[k] = t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
    }
  }
  return 0;
}

/* ImageEnhance.Contrast: blend with a grey image at the L mean,
** int(mean + 0.5) (for a 1-channel image, its own mean). */
void df_aug_contrast(df_img *img, double factor) {
  if (!img || !img->px) return;
  size_t n = npix(img);
  int64_t hist[256] = {0};
  const uint8_t *p = img->px;
  if (img->c >= 3)
    for (size_t i = 0; i < n; i++, p += img->c) hist[luma(p)]++;
  else
    for (size_t i = 0; i < n; i++, p += img->c) hist[p[0]]++;
  double sum = 0;
  for (int i = 0; i < 256; i++) sum += (double)i * hist[i];
  int mean = (int)(sum / (double)n + 0.5);
  blend_into(img, NULL, 1, (uint8_t)mean, factor);
}

void df_aug_brightness(df_img *img, double factor) {
  if (!img || !img->px) return;
  blend_into(img, NULL, 1, 0, factor);
}

/*
** ImageEnhance.Sharpness: the degenerate image is ImageFilter.SMOOTH
** (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divided by 13 in float), computed as
** PIL's ImagingFilter3x3 does: float sums from 0.5, rows y+1, y, y-1,
** clipped and truncated; the border rows and columns are copied.  Images
** under 3x3 are copied whole.
*/
int df_aug_sharpness(df_img *img, double factor, df_img *tmp, df_err *err) {
  if (df_img_check(img, "Sharpness", err)) return DF_EINVAL;
  if ((float)factor == 1.0f) return 0;
  if (!tmp || !tmp->px || tmp->h != img->h || tmp->w != img->w || tmp->c != img->c)
    return df_err_set(err, DF_EINVAL, "Sharpness: scratch image does not match %dx%dx%d", img->h,
                      img->w, img->c);
  const int H = img->h, W = img->w, c = img->c;
  const size_t stride = (size_t)W * c;
  memcpy(tmp->px, img->px, stride * H);
  if (H >= 3 && W >= 3) {
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    for (int y = 1; y < H - 1; y++) {
      const uint8_t *in_1 = img->px + (size_t)(y - 1) * stride;
      const uint8_t *in0 = img->px + (size_t)y * stride;
      const uint8_t *in1 = img->px + (size_t)(y + 1) * stride;
      uint8_t *out = tmp->px + (size_t)y * stride;
      for (int x = 1; x < W - 1; x++)
        for (int k = 0; k < c; k++) {
          int i = x * c + k;
          float ss = 0.5f;
          ss += (float)in1[i - c] * k1 + (float)in1[i] * k1 + (float)in1[i + c] * k1;
          ss += (float)in0[i - c] * k1 + (float)in0[i] * k5 + (float)in0[i + c] * k1;
          ss += (float)in_1[i - c] * k1 + (float)in_1[i] * k1 + (float)in_1[i + c] * k1;
          out[i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (uint8_t)ss;
        }
    }
  }
  blend_into(img, tmp->px, 0, 0, factor);
  return 0;
}

/* ------------------------------------------------------------ geometric */

/* Python's round(x, 15): the exact binary value rounded to 15 decimals
** (glibc's printf rounds exactly), read back correctly rounded. */
static double round15(double x) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.15f", x);
  return strtod(buf, NULL);
}

static int same_size(const df_img *a, const df_img *b, const char *what, df_err *err) {
  if (df_img_check(a, what, err) || df_img_check(b, what, err)) return DF_EINVAL;
  if (a->h != b->h || a->w != b->w || a->c != b->c)
    return df_err_set(err, DF_EINVAL, "%s: images differ in size (%dx%dx%d and %dx%dx%d)", what,
                      a->h, a->w, a->c, b->h, b->w, b->c);
  if (a->px == b->px) return df_err_set(err, DF_EINVAL, "%s: input and output share pixels", what);
  return 0;
}

int df_aug_rotate(const df_img *src, df_img *dst, double degrees, df_filter filter,
                  const uint8_t *fill, df_err *err) {
  if (same_size(src, dst, "Rotate", err)) return DF_EINVAL;
  if (!isfinite(degrees)) return df_err_set(err, DF_EINVAL, "Rotate: angle is not finite");
  double angle = fmod(degrees, 360.0);
  if (angle < 0) angle += 360.0; /* Python's float %: the sign of 360 */
  const int W = src->w, H = src->h, c = src->c;
  if (angle == 0) {
    memcpy(dst->px, src->px, (size_t)W * H * c);
    return 0;
  }
  if (angle == 180 || ((angle == 90 || angle == 270) && W == H)) {
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int sx, sy;
        if (angle == 180) sx = W - 1 - x, sy = H - 1 - y;
        else if (angle == 90) sx = W - 1 - y, sy = x; /* counter-clockwise */
        else sx = y, sy = H - 1 - x;
        memcpy(dst->px + ((size_t)y * W + x) * c, src->px + ((size_t)sy * W + sx) * c, (size_t)c);
      }
    return 0;
  }
  double a = -(angle * (M_PI / 180.0));
  double m[6] = {round15(cos(a)), round15(sin(a)), 0.0, round15(-sin(a)), round15(cos(a)), 0.0};
  double cx = W / 2.0, cy = H / 2.0;
  double tx = m[0] * -cx + m[1] * -cy + m[2];
  double ty = m[3] * -cx + m[4] * -cy + m[5];
  m[2] = tx + cx;
  m[5] = ty + cy;
  return df_img_affine(src, dst, m, filter, fill, err);
}

/* The fill colour as one value per channel. */
static void fill_vec(uint8_t fill, int c, uint8_t *out) {
  for (int k = 0; k < c; k++) out[k] = fill;
}

/* Run a geometric op into tmp, then copy back into img. */
static int geometric(df_img *img, df_img *tmp, const double m[6], uint8_t fill, df_filter filter,
                     const char *what, df_err *err) {
  if (same_size(img, tmp, what, err)) return DF_EINVAL;
  uint8_t fv[DF_IMG_MAX_CHANNELS];
  fill_vec(fill, img->c, fv);
  int rc = df_img_affine(img, tmp, m, filter, fv, err);
  if (rc) return rc;
  memcpy(img->px, tmp->px, npix(img) * img->c);
  return 0;
}

/* An integer argument (bits, threshold, addend) from a double: values past
** any meaningful range are clamped first, so the conversion is defined. */
static int int_arg(double a) { return a < -100000 ? -100000 : a > 100000 ? 100000 : (int)a; }

int df_aug_op_apply(df_aug_op op, double arg, df_img *img, df_img *tmp, uint8_t fill,
                    df_filter filter, df_err *err) {
  if (df_img_check(img, df_aug_op_name(op), err)) return DF_EINVAL;
  if (!isfinite(arg)) return df_err_set(err, DF_EINVAL, "%s: argument is not finite", df_aug_op_name(op));
  switch (op) {
    case DF_AUG_AUTOCONTRAST: df_aug_autocontrast(img); return 0;
    case DF_AUG_EQUALIZE: df_aug_equalize(img); return 0;
    case DF_AUG_INVERT: df_aug_invert(img); return 0;
    case DF_AUG_POSTERIZE_INC:
    case DF_AUG_POSTERIZE: df_aug_posterize(img, int_arg(arg)); return 0;
    case DF_AUG_SOLARIZE_INC:
    case DF_AUG_SOLARIZE: df_aug_solarize(img, int_arg(arg)); return 0;
    case DF_AUG_SOLARIZE_ADD: df_aug_solarize_add(img, int_arg(arg), 128); return 0;
    case DF_AUG_COLOR_INC:
    case DF_AUG_COLOR: return df_aug_color(img, arg, err);
    case DF_AUG_CONTRAST_INC:
    case DF_AUG_CONTRAST: df_aug_contrast(img, arg); return 0;
    case DF_AUG_BRIGHTNESS_INC:
    case DF_AUG_BRIGHTNESS: df_aug_brightness(img, arg); return 0;
    case DF_AUG_SHARPNESS_INC:
    case DF_AUG_SHARPNESS: return df_aug_sharpness(img, arg, tmp, err);
    case DF_AUG_ROTATE: {
      if (same_size(img, tmp, "Rotate", err)) return DF_EINVAL;
      uint8_t fv[DF_IMG_MAX_CHANNELS];
      fill_vec(fill, img->c, fv);
      int rc = df_aug_rotate(img, tmp, arg, filter, fv, err);
      if (rc) return rc;
      memcpy(img->px, tmp->px, npix(img) * img->c);
      return 0;
    }
    case DF_AUG_SHEAR_X: {
      double m[6] = {1, arg, 0, 0, 1, 0};
      return geometric(img, tmp, m, fill, filter, "ShearX", err);
    }
    case DF_AUG_SHEAR_Y: {
      double m[6] = {1, 0, 0, arg, 1, 0};
      return geometric(img, tmp, m, fill, filter, "ShearY", err);
    }
    case DF_AUG_TRANSLATE_X_REL: {
      double m[6] = {1, 0, arg * img->w, 0, 1, 0};
      return geometric(img, tmp, m, fill, filter, "TranslateXRel", err);
    }
    case DF_AUG_TRANSLATE_Y_REL: {
      double m[6] = {1, 0, 0, 0, 1, arg * img->h};
      return geometric(img, tmp, m, fill, filter, "TranslateYRel", err);
    }
    case DF_AUG_COUNT: break;
  }
  return df_err_set(err, DF_EINVAL, "augment: unknown op %d", (int)op);
}

/* ------------------------------------------------------------ RandAugment */

void df_aug_ra_default(df_aug_ra_config *cfg) {
  cfg->num_ops = 4;
  cfg->magnitude = 7;
  cfg->magnitude_std = 0.5;
  cfg->prob = 0.5;
  cfg->increasing = 1;
  cfg->translate_pct = 0.45;
  cfg->fill = 128;
  cfg->filter = DF_FILTER_BICUBIC;
}

int df_aug_ra_parse(const char *s, df_aug_ra_config *cfg, df_err *err) {
  char q[80];
  if (!s) return df_err_set(err, DF_EINVAL, "RandAugment: no config string");
  df_aug_ra_default(cfg);
  cfg->num_ops = 2, cfg->magnitude = 10, cfg->magnitude_std = 0, cfg->increasing = 0;
  if (strncmp(s, "rand", 4) != 0 || (s[4] && s[4] != '-'))
    return df_err_set(err, DF_EINVAL, "RandAugment config '%s': must start with 'rand'",
                      df_err_quote(q, sizeof q, s, strlen(s)));
  const char *p = s + 4;
  while (*p == '-') {
    p++;
    const char *key = p;
    while (*p && (*p < '0' || *p > '9') && *p != '-') p++;
    size_t klen = (size_t)(p - key);
    char *end;
    double v = strtod(p, &end);
    if (end == p || (*end && *end != '-') || !isfinite(v))
      return df_err_set(err, DF_EINVAL, "RandAugment config '%s': bad value for '%.*s'",
                        df_err_quote(q, sizeof q, s, strlen(s)), (int)klen, key);
    p = end;
    if (klen == 1 && key[0] == 'm') {
      if (v < 0 || v > 1000) goto bad;
      cfg->magnitude = (int)v; /* timm: int(val) */
    } else if (klen == 1 && key[0] == 'n') {
      if (v < 0 || v > DF_AUG_RA_MAX_OPS) goto bad;
      cfg->num_ops = (int)v;
    } else if (klen == 4 && !strncmp(key, "mstd", 4)) {
      if (v < 0) goto bad;
      cfg->magnitude_std = v;
    } else if (klen == 3 && !strncmp(key, "inc", 3)) {
      cfg->increasing = v != 0;
    } else {
      return df_err_set(err, DF_EINVAL, "RandAugment config '%s': unknown key '%.*s'",
                        df_err_quote(q, sizeof q, s, strlen(s)), (int)klen, key);
    }
    continue;
  bad:
    return df_err_set(err, DF_EINVAL, "RandAugment config '%s': value out of range for '%.*s'",
                      df_err_quote(q, sizeof q, s, strlen(s)), (int)klen, key);
  }
  if (*p)
    return df_err_set(err, DF_EINVAL, "RandAugment config '%s': cannot parse",
                      df_err_quote(q, sizeof q, s, strlen(s)));
  return 0;
}

/* timm's level_to_arg for op at magnitude m (in [0, 10]); signed ops draw
** their sign here: negative when uniform > 0.5 (_randomly_negate). */
static double level_arg(df_rng *rng, df_aug_op op, double m, double translate_pct) {
  double v = 0;
  switch (op) {
    case DF_AUG_ROTATE: v = (m / 10.0) * 30.0; break;
    case DF_AUG_POSTERIZE_INC: return 4 - (int)((m / 10.0) * 4);
    case DF_AUG_POSTERIZE: return (int)((m / 10.0) * 4);
    case DF_AUG_SOLARIZE_INC: return 256 - (int)((m / 10.0) * 256);
    case DF_AUG_SOLARIZE: return (int)((m / 10.0) * 256);
    case DF_AUG_SOLARIZE_ADD: return (int)((m / 10.0) * 110);
    case DF_AUG_COLOR_INC:
    case DF_AUG_CONTRAST_INC:
    case DF_AUG_BRIGHTNESS_INC:
    case DF_AUG_SHARPNESS_INC: v = (m / 10.0) * 0.9; break;
    case DF_AUG_COLOR:
    case DF_AUG_CONTRAST:
    case DF_AUG_BRIGHTNESS:
    case DF_AUG_SHARPNESS: return (m / 10.0) * 1.8 + 0.1;
    case DF_AUG_SHEAR_X:
    case DF_AUG_SHEAR_Y: v = (m / 10.0) * 0.3; break;
    case DF_AUG_TRANSLATE_X_REL:
    case DF_AUG_TRANSLATE_Y_REL: v = (m / 10.0) * translate_pct; break;
    default: return 0;
  }
  if (op_signed[op] && df_rng_uniform(rng) > 0.5) v = -v;
  if (op == DF_AUG_COLOR_INC || op == DF_AUG_CONTRAST_INC || op == DF_AUG_BRIGHTNESS_INC ||
      op == DF_AUG_SHARPNESS_INC)
    v = 1.0 + v;
  return v;
}

int df_aug_ra_draw(df_rng *rng, const df_aug_ra_config *cfg, df_aug_ra_params *out, df_err *err) {
  if (cfg->num_ops < 0 || cfg->num_ops > DF_AUG_RA_MAX_OPS)
    return df_err_set(err, DF_EINVAL, "RandAugment: %d ops (0..%d)", cfg->num_ops, DF_AUG_RA_MAX_OPS);
  if (!isfinite(cfg->magnitude) || !isfinite(cfg->magnitude_std) || !(cfg->prob >= 0) ||
      !(cfg->prob <= 1) || !isfinite(cfg->translate_pct))
    return df_err_set(err, DF_EINVAL, "RandAugment: magnitude, std, prob or translate_pct out of range");
  if (cfg->filter != DF_FILTER_BILINEAR && cfg->filter != DF_FILTER_BICUBIC)
    return df_err_set(err, DF_EINVAL, "RandAugment: unknown filter %d", (int)cfg->filter);
  const df_aug_op *list = cfg->increasing ? ops_increasing : ops_plain;
  memset(out, 0, sizeof *out);
  out->n = cfg->num_ops;
  out->fill = cfg->fill;
  out->filter = cfg->filter;
  for (int i = 0; i < out->n; i++) out->step[i].op = list[df_rng_below(rng, N_RA_OPS)];
  for (int i = 0; i < out->n; i++) {
    df_aug_ra_step *s = &out->step[i];
    if (cfg->prob < 1.0 && df_rng_uniform(rng) > cfg->prob) continue;
    s->applied = 1;
    double m = cfg->magnitude;
    if (cfg->magnitude_std > 0) m = m + cfg->magnitude_std * df_rng_normal(rng);
    m = m < 0 ? 0 : m > 10 ? 10 : m;
    s->magnitude = m;
    s->arg = level_arg(rng, s->op, m, cfg->translate_pct);
  }
  return 0;
}

int df_aug_ra_apply(const df_aug_ra_params *p, df_img *img, df_img *tmp, df_err *err) {
  if (df_img_check(img, "RandAugment", err)) return DF_EINVAL;
  if (p->n < 0 || p->n > DF_AUG_RA_MAX_OPS)
    return df_err_set(err, DF_EINVAL, "RandAugment: %d ops (0..%d)", p->n, DF_AUG_RA_MAX_OPS);
  df_img own = {0};
  if (!tmp) {
    int need = 0;
    for (int i = 0; i < p->n; i++) need |= p->step[i].applied;
    if (!need) return 0;
    if (df_img_alloc(&own, img->h, img->w, img->c, err)) return err ? err->code : DF_ENOMEM;
    tmp = &own;
  }
  int rc = 0;
  for (int i = 0; i < p->n && !rc; i++)
    if (p->step[i].applied)
      rc = df_aug_op_apply(p->step[i].op, p->step[i].arg, img, tmp, p->fill, p->filter, err);
  df_img_release(&own);
  return rc;
}

/* ------------------------------------------------------------ crop draws */

/* Python's round() to an int (half to even); out-of-range values (only
** from nonsense parameters) saturate instead of overflowing. */
static int round_even(double v) {
  if (!(v > -1e9)) return v != v ? 0 : -1000000000;
  if (v > 1e9) return 1000000000;
  return (int)nearbyint(v);
}

void df_aug_rrc_draw(df_rng *rng, int img_h, int img_w, const double scale[2],
                     const double ratio[2], df_box *out) {
  double area = (double)img_h * img_w;
  double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
  for (int t = 0; t < 10; t++) {
    double target = df_rng_range(rng, scale[0], scale[1]) * area;
    double aspect = exp(df_rng_range(rng, lr0, lr1));
    double fw = sqrt(target * aspect), fh = sqrt(target / aspect);
    if (!(fw < 1e9) || !(fh < 1e9)) continue;
    int w = round_even(fw), h = round_even(fh);
    if (0 < w && w <= img_w && 0 < h && h <= img_h) {
      out->y = (int)df_rng_randint(rng, 0, img_h - h);
      out->x = (int)df_rng_randint(rng, 0, img_w - w);
      out->w = w, out->h = h;
      return;
    }
  }
  double in_ratio = (double)img_w / img_h;
  double rmin = ratio[0] < ratio[1] ? ratio[0] : ratio[1];
  double rmax = ratio[0] < ratio[1] ? ratio[1] : ratio[0];
  int w, h;
  if (in_ratio < rmin) {
    w = img_w;
    h = round_even(w / rmin);
  } else if (in_ratio > rmax) {
    h = img_h;
    w = round_even(h * rmax);
  } else {
    w = img_w, h = img_h;
  }
  if (h > img_h) h = img_h;
  if (w > img_w) w = img_w;
  if (h < 1) h = 1;
  if (w < 1) w = 1;
  out->y = (img_h - h) / 2;
  out->x = (img_w - w) / 2;
  out->w = w, out->h = h;
}

int df_aug_erase_draw(df_rng *rng, int img_h, int img_w, double prob, double min_area,
                      double max_area, double min_aspect, double max_aspect, int tries,
                      df_box *out) {
  memset(out, 0, sizeof *out);
  if (df_rng_uniform(rng) > prob) return 0;
  double area = (double)img_h * img_w;
  double la = log(min_aspect), lb = log(max_aspect);
  for (int t = 0; t < tries; t++) {
    double target = df_rng_range(rng, min_area, max_area) * area;
    double aspect = exp(df_rng_range(rng, la, lb));
    double fh = sqrt(target * aspect), fw = sqrt(target / aspect);
    if (!(fw < 1e9) || !(fh < 1e9)) continue;
    int h = round_even(fh), w = round_even(fw);
    if (w < img_w && h < img_h) {
      out->y = (int)df_rng_randint(rng, 0, img_h - h);
      out->x = (int)df_rng_randint(rng, 0, img_w - w);
      out->w = w < 0 ? 0 : w, out->h = h < 0 ? 0 : h;
      return 1;
    }
  }
  return 0;
}

void df_aug_erase_fill(df_rng *rng, float *clip, int C, int T, int H, int W, const df_box *b) {
  int x0 = b->x < 0 ? 0 : b->x, y0 = b->y < 0 ? 0 : b->y;
  int x1 = b->x + b->w > W ? W : b->x + b->w, y1 = b->y + b->h > H ? H : b->y + b->h;
  if (x1 <= x0 || y1 <= y0) return;
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) {
      float *plane = clip + ((size_t)c * T + t) * (size_t)H * W;
      for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) plane[(size_t)y * W + x] = (float)df_rng_normal(rng);
    }
}

/* Python's a // b for b > 0. */
static int floordiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

void df_aug_msc_offsets(int img_w, int img_h, int crop_w, int crop_h, int off[13][2]) {
  int ws = floordiv(img_w - crop_w, 4), hs = floordiv(img_h - crop_h, 4);
  static const int steps[13][2] = {{0, 0}, {4, 0}, {0, 4}, {4, 4}, {2, 2}, {0, 2}, {4, 2},
                                   {2, 4}, {2, 0}, {1, 1}, {3, 1}, {1, 3}, {3, 3}};
  for (int i = 0; i < 13; i++) off[i][0] = steps[i][0] * ws, off[i][1] = steps[i][1] * hs;
}

int df_aug_msc_pairs(int img_w, int img_h, int out_w, int out_h, const double *scales,
                     int nscales, int max_distort, int (*pairs)[2], int max) {
  int base = img_w < img_h ? img_w : img_h, n = 0;
  for (int i = 0; i < nscales; i++) { /* i indexes h, j indexes w */
    int h = (int)(base * scales[i]);
    if (abs(h - out_h) < 3) h = out_h;
    for (int j = 0; j < nscales; j++) {
      int w = (int)(base * scales[j]);
      if (abs(w - out_w) < 3) w = out_w;
      if (abs(i - j) <= max_distort) {
        if (n < max) pairs[n][0] = w, pairs[n][1] = h;
        n++;
      }
    }
  }
  return n;
}

#define MSC_MAX_SCALES 16

int df_aug_msc_draw(df_rng *rng, int img_w, int img_h, int out_w, int out_h, const double *scales,
                    int nscales, int max_distort, df_box *out, df_err *err) {
  if (img_w < 1 || img_h < 1 || out_w < 1 || out_h < 1 || img_w > DF_IMG_MAX_SIDE ||
      img_h > DF_IMG_MAX_SIDE || out_w > DF_IMG_MAX_SIDE || out_h > DF_IMG_MAX_SIDE)
    return df_err_set(err, DF_EINVAL, "multi-scale crop: bad sizes (image %dx%d, output %dx%d)",
                      img_w, img_h, out_w, out_h);
  if (nscales < 1 || nscales > MSC_MAX_SCALES)
    return df_err_set(err, DF_EINVAL, "multi-scale crop: %d scales (1..%d)", nscales, MSC_MAX_SCALES);
  for (int i = 0; i < nscales; i++)
    if (!(scales[i] > 0 && scales[i] <= 1))
      return df_err_set(err, DF_EINVAL, "multi-scale crop: scale %g outside (0, 1]", scales[i]);
  int pairs[MSC_MAX_SCALES * MSC_MAX_SCALES][2];
  int n = df_aug_msc_pairs(img_w, img_h, out_w, out_h, scales, nscales, max_distort < 0 ? 0 : max_distort,
                           pairs, MSC_MAX_SCALES * MSC_MAX_SCALES);
  int k = (int)df_rng_below(rng, (uint64_t)n);
  int cw = pairs[k][0], ch = pairs[k][1];
  if (cw < 1 || ch < 1)
    return df_err_set(err, DF_EINVAL, "multi-scale crop: image %dx%d too small for a %dx%d crop",
                      img_w, img_h, cw, ch);
  int off[13][2];
  df_aug_msc_offsets(img_w, img_h, cw, ch, off);
  int o = (int)df_rng_below(rng, 13);
  out->x = off[o][0], out->y = off[o][1], out->w = cw, out->h = ch;
  return 0;
}

int df_aug_test_view(int n_frames, int h, int w, int clip_len, int size, int segments, int crops,
                     int seg, int crop, int *t0, df_box *box, df_err *err) {
  if (n_frames < 1 || h < 1 || w < 1 || clip_len < 1 || size < 1)
    return df_err_set(err, DF_EINVAL, "test view: bad sizes (%d frames of %dx%d, clip %d, size %d)",
                      n_frames, h, w, clip_len, size);
  if (segments < 1 || crops < 1 || seg < 0 || seg >= segments || crop < 0 || crop >= crops)
    return df_err_set(err, DF_EINVAL, "test view: view (%d, %d) of %d segments x %d crops", seg,
                      crop, segments, crops);
  int lng = h >= w ? h : w;
  if (lng < size || (h < w ? h : w) < 1)
    return df_err_set(err, DF_EINVAL, "test view: a %dx%d frame is smaller than the %d crop", h, w, size);
  double tstep = segments > 1 ? (double)(n_frames - clip_len) / (segments - 1) : 0;
  if (tstep < 0) tstep = 0;
  *t0 = segments > 1 ? (int)(seg * tstep) : (n_frames > clip_len ? (n_frames - clip_len) / 2 : 0);
  int s0 = crops > 1 ? (int)(crop * ((double)(lng - size) / (crops - 1))) : (lng - size) / 2;
  if (h >= w) box->x = 0, box->w = w, box->y = s0, box->h = size;
  else box->y = 0, box->h = h, box->x = s0, box->w = size;
  return 0;
}

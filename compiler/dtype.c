/*
** dtype.c -- see dtype.h.
*/
#include "dtype.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const struct {
  const char *name, *lname;
  size_t size;
  int is_float;
} dtypes[] = {
#define X(e, s, sz, fl) {s, #e, sz, fl},
    DF_DTYPES(X)
#undef X
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == DF_DTYPE_COUNT,
               "dtype table out of step with the enum");

static const char *lnames[] = {"f64", "f32", "f16", "bf16",
                               "i64", "i32", "u8",  "bool"};
_Static_assert(sizeof lnames / sizeof lnames[0] == DF_DTYPE_COUNT,
               "dtype lua names out of step with the enum");

const char *df_dtype_name(df_dtype t) {
  return (unsigned)t < DF_DTYPE_COUNT ? dtypes[t].name : "?";
}
const char *df_dtype_lname(df_dtype t) {
  return (unsigned)t < DF_DTYPE_COUNT ? lnames[t] : "?";
}
size_t df_dtype_size(df_dtype t) {
  return (unsigned)t < DF_DTYPE_COUNT ? dtypes[t].size : 0;
}
int df_dtype_is_float(df_dtype t) {
  return (unsigned)t < DF_DTYPE_COUNT && dtypes[t].is_float;
}

int df_dtype_parse(const char *s, df_dtype *out) {
  static const struct { const char *alias; df_dtype t; } aliases[] = {
      {"float64", DF_F64}, {"double", DF_F64}, {"float32", DF_F32},
      {"float", DF_F32},   {"float16", DF_F16}, {"half", DF_F16},
      {"bfloat16", DF_BF16}, {"int64", DF_I64}, {"long", DF_I64},
      {"int32", DF_I32},   {"int", DF_I32},    {"uint8", DF_U8},
  };
  for (int i = 0; i < DF_DTYPE_COUNT; i++)
    if (strcasecmp(s, dtypes[i].name) == 0) { *out = (df_dtype)i; return 0; }
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcasecmp(s, aliases[i].alias) == 0) { *out = aliases[i].t; return 0; }
  return -1;
}

float df_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t df_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);                                         /* RNE */
  return (uint16_t)(u >> 16);
}

float df_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  int exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = ldexpf((float)man, -24); /* zero or subnormal */
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= sign;
    memcpy(&f, &u, 4);
    return f;
  }
  uint32_t u;
  if (exp == 31) u = sign | 0x7f800000u | (man << 13);
  else u = sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13);
  memcpy(&f, &u, 4);
  return f;
}

uint16_t df_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return sign | 0x7e00u;      /* NaN */
  if (au >= 0x477ff000u) return sign | 0x7c00u;     /* overflow -> inf */
  if (au < 0x38800000u) {                           /* subnormal or zero */
    float a;
    memcpy(&a, &au, 4);
    return sign | (uint16_t)lrintf(a * 16777216.0f); /* 2^24, RNE */
  }
  uint32_t r = au + 0xfffu + ((au >> 13) & 1u);
  return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

double df_dtype_get(df_dtype t, const void *base, size_t i) {
  switch (t) {
  case DF_F64: return ((const double *)base)[i];
  case DF_F32: return ((const float *)base)[i];
  case DF_F16: return df_f16_to_f32(((const uint16_t *)base)[i]);
  case DF_BF16: return df_bf16_to_f32(((const uint16_t *)base)[i]);
  case DF_I64: return (double)((const int64_t *)base)[i];
  case DF_I32: return ((const int32_t *)base)[i];
  case DF_U8: return ((const uint8_t *)base)[i];
  case DF_BOOL: return ((const uint8_t *)base)[i] != 0;
  default: return 0.0;
  }
}

void df_dtype_set(df_dtype t, void *base, size_t i, double v) {
  switch (t) {
  case DF_F64: ((double *)base)[i] = v; break;
  case DF_F32: ((float *)base)[i] = (float)v; break;
  case DF_F16: ((uint16_t *)base)[i] = df_f32_to_f16((float)v); break;
  case DF_BF16: ((uint16_t *)base)[i] = df_f32_to_bf16((float)v); break;
  case DF_I64: ((int64_t *)base)[i] = isfinite(v) ? (int64_t)v : 0; break;
  case DF_I32: ((int32_t *)base)[i] = isfinite(v) ? (int32_t)v : 0; break;
  case DF_U8: ((uint8_t *)base)[i] = isfinite(v) ? (uint8_t)(int)v : 0; break;
  case DF_BOOL: ((uint8_t *)base)[i] = v != 0.0; break;
  default: break;
  }
}

void df_dtype_convert(df_dtype dst_t, void *dst, df_dtype src_t,
                      const void *src, size_t n) {
  if (dst_t == src_t) {
    memcpy(dst, src, n * df_dtype_size(dst_t));
    return;
  }
  if (dst_t == DF_I64 && (src_t == DF_I32 || src_t == DF_U8 || src_t == DF_BOOL)) {
    for (size_t i = 0; i < n; i++)
      ((int64_t *)dst)[i] = (int64_t)df_dtype_get(src_t, src, i);
    return;
  }
  if (src_t == DF_I64 && dst_t != DF_F32 && dst_t != DF_F16 && dst_t != DF_BF16) {
    /* exact for every integer target; f64 may round above 2^53 as C does */
    for (size_t i = 0; i < n; i++) {
      int64_t v = ((const int64_t *)src)[i];
      switch (dst_t) {
      case DF_F64: ((double *)dst)[i] = (double)v; break;
      case DF_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
      case DF_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
      case DF_BOOL: ((uint8_t *)dst)[i] = v != 0; break;
      default: break;
      }
    }
    return;
  }
  for (size_t i = 0; i < n; i++)
    df_dtype_set(dst_t, dst, i, df_dtype_get(src_t, src, i));
}

/*
** dtype.h -- element types shared by the graph, the devices and the files.
**
** One table (DF_DTYPES) declares every dtype once: enum name, safetensors
** name, element size, and whether it is a floating-point type.
*/
#ifndef DF_DTYPE_H
#define DF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/*      enum      st name   size float */
#define DF_DTYPES(X)           \
  X(F64,  "F64",  8, 1)        \
  X(F32,  "F32",  4, 1)        \
  X(F16,  "F16",  2, 1)        \
  X(BF16, "BF16", 2, 1)        \
  X(I64,  "I64",  8, 0)        \
  X(I32,  "I32",  4, 0)        \
  X(U8,   "U8",   1, 0)        \
  X(BOOL, "BOOL", 1, 0)

typedef enum {
#define X(e, s, sz, fl) DF_##e,
  DF_DTYPES(X)
#undef X
  DF_DTYPE_COUNT
} df_dtype;

#define DF_MAX_DIMS 8

const char *df_dtype_name(df_dtype t);       /* "F32"; safetensors' spelling */
const char *df_dtype_lname(df_dtype t);      /* "f32"; the Lua spelling */
size_t df_dtype_size(df_dtype t);
int df_dtype_is_float(df_dtype t);
/* Parse either spelling ("F32", "f32", "float32"); returns 0 or -1. */
int df_dtype_parse(const char *s, df_dtype *out);

/* Convert n elements between dtypes.  Floats round to nearest even when
** narrowing (f32 -> bf16/f16); float -> int truncates toward zero; any
** -> bool is (x != 0).  src and dst must not overlap. */
void df_dtype_convert(df_dtype dst_t, void *dst, df_dtype src_t,
                      const void *src, size_t n);

/* Element i of a buffer as a double, and the reverse. */
double df_dtype_get(df_dtype t, const void *base, size_t i);
void df_dtype_set(df_dtype t, void *base, size_t i, double v);

float df_bf16_to_f32(uint16_t h);
uint16_t df_f32_to_bf16(float f);
float df_f16_to_f32(uint16_t h);
uint16_t df_f32_to_f16(float f);

#endif

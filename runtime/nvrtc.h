/*
** nvrtc.h -- NVRTC, loaded at run time (dlopen), so that dferc builds and
** starts without the CUDA toolkit.  Compiles CUDA C to a cubin for a
** compute capability.
*/
#ifndef DF_NVRTC_H
#define DF_NVRTC_H

#include <stddef.h>

#include "compiler/err.h"

/* 0 if NVRTC could be loaded, else an error saying why (one line). */
int df_nvrtc_available(df_err *err);
/* "nvrtc 13.0" (or "" when unavailable). */
const char *df_nvrtc_version(void);

/* Compile `src` (named `name` in messages) for sm_<arch> (e.g. 90).  On
** success *cubin is malloc'ed (the caller frees it).  On failure the
** error holds the first lines of NVRTC's log. */
int df_nvrtc_compile(const char *src, const char *name, int arch, void **cubin, size_t *size, df_err *err);

#endif

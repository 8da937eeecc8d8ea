/*
** codegen_cuda.h -- Kernel IR printed as CUDA C (one translation unit for
** a plan's kernels), for NVRTC.
**
** Kernel K becomes `extern "C" __global__ void dferc_<Kernel IR hash>(T0
** *b0, ..., long long start, long long end)`, under a comment with K's
** readable name; identical kernels are printed once: each thread runs one iteration of the PARALLEL
** loop (i = start + blockIdx.x * blockDim.x + threadIdx.x), the inner
** loops sequentially; the VECTOR loops are where a later schedule maps
** lanes.  The same arithmetic as the CPU backend is printed (NaN-propagating max/min,
** truncating integer division that gives 0 for a zero divisor).
*/
#ifndef DF_CODEGEN_CUDA_H
#define DF_CODEGEN_CUDA_H

#include <stdio.h>

#include "compiler/kir.h"

/* Print the prelude and every kernel (distinct by hash) to f. */
void df_cuda_print(kir_kernel *const *ks, int n, FILE *f);

/* The CUDA C source of n kernels as a malloc'ed string (NULL: no memory). */
char *df_cuda_source(kir_kernel *const *ks, int n);

#endif

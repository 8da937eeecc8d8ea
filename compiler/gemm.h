/*
** gemm.h -- a float32 matmul node as a Kernel IR GEMM (the generated
** alternative to OpenBLAS on the cpu device).
**
** The kernel, for C[batch..., M, N] = op(A) op(B) (either operand
** transposed, batch dims broadcast as the matmul op does):
**   PARALLEL over (batch, block of nc columns)
**     for each block of kc of the depth K (then the remainder):
**       pack B's kc x nc block into a SCRATCH panel, nr columns at a time
**       (zero past N), then for each mr rows of M (then the remainder):
**         TILE_DOT  C[rows, nr columns] (+)= A[rows, kc] . panel[kc, nr]
**       (A read where it lies; or, when packed -- always for bf16 -- the
**       rows in blocks of mc, each packed mr rows interleaved)
** Buffers: A, B, C (GLOBAL, the step's slots in that order), B's panel
** (SCRATCH, kc * nc floats), A's block when packed (SCRATCH, kc * mc
** floats).  The tile sizes are parameters (df_gemm_params), so that the
** autotuner can choose them.
*/
#ifndef DF_GEMM_H
#define DF_GEMM_H

#include "compiler/graph.h"
#include "compiler/kir.h"

typedef struct df_gemm_params {
  int mr;      /* rows of a register tile (1 .. 16) */
  int nr;      /* columns of a register tile: 16, 32 or 48 */
  int kc;      /* depth of a packed panel */
  int nc_max;  /* the widest block of columns a thread packs */
  int mc;      /* rows of A packed at a time (rounded down to mr's multiple) */
  int bf16;    /* 1: the packed panels in bfloat16, AVX512-BF16 dot products
               ** (float32 sums; the optional bf16 mode) */
  int par;     /* at least this many parallel items where the columns allow
               ** (the threads that will run it; 0 or 1: no minimum) */
  int direct_a;/* 1: float32 A read where it lies, not packed */
} df_gemm_params;

/* The defaults: 12 x 32 tiles (24 accumulators of 16 floats), kc 256,
** nc at most 1024 (a panel of B up to 1 MB: few column blocks, so that A
** is read few times), mc 192, float32 A read where it lies (about 5%
** faster here than packing it; bf16 always packs).  The panels live on
** the running thread's stack (the pool's workers have 16 MB). */
extern const df_gemm_params df_gemm_default;

/* The GEMM of matmul node n of g; NULL with DF_EUNSUPPORTED in err when n
** is not a float32 product, DF_ENOMEM when out of memory. */
/* The panels live on the running thread's stack: at most this many bytes. */
#define DF_GEMM_MAX_SCRATCH (4 << 20)

kir_kernel *df_gemm_kernel(const df_graph *g, const df_node *n, const df_gemm_params *prm, df_err *err);

#endif

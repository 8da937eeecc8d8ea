/*
** cpu_gemm.h -- which code computes each float32 product of the cpu
** device: OpenBLAS, or a generated GEMM (compiler/gemm) with which tile
** sizes.
**
** Modes (df_cpu_set_gemm in runtime/device.h, or $DFERC_GEMM):
**   auto       (the default) the winner the tuner stored in the kernel
**              cache for the product's shape, else OpenBLAS
**   blas, generated, bf16   that one for every product
** Under the tuner's search mode (--tune, DFERC_TUNE=1), auto times
** OpenBLAS against a few tile sizes of the generated GEMM for every shape
** that has no stored winner -- each generated candidate first checked
** against OpenBLAS on random inputs -- and stores the fastest, so that
** the same cache gives every process the same choice.  bf16 is never
** chosen by auto (it is not exact to float32).
*/
#ifndef DF_CPU_GEMM_H
#define DF_CPU_GEMM_H

#include "compiler/gemm.h"
#include "compiler/graph.h"

/* For float32 matmul node n: DF_GEMM_BLAS, or DF_GEMM_GENERATED /
** DF_GEMM_BF16 with the tile sizes in *prm; < 0 with err on failure.
** `why` (may be NULL) receives the choice as text ("blas", "generated
** mr=12 nr=32 kc=256 nc=1024 mc=192", with " (stored)" or " (tuned)"). */
int df_cpu_gemm_choose(const df_graph *g, const df_node *n, df_gemm_params *prm, char *why, size_t nwhy,
                       df_err *err);

/* OpenBLAS's product for node n over A, B into C (in runtime/cpu.c). */
void df_cpu_matmul_blas(const df_graph *g, const df_node *n, void *A, void *B, void *C);

#endif

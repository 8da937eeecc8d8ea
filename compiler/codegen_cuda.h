/*
** codegen_cuda.h -- Kernel IR printed as CUDA C (one translation unit for
** a plan's kernels), for NVRTC.
**
** Kernel K becomes `extern "C" __global__ void dferc_<Kernel IR hash>(T0
** *b0, ..., long long start, long long end)`, under a comment with K's
** readable name and thread count; identical kernels are printed once: each
** thread runs one iteration of the PARALLEL loop (i = start + blockIdx.x *
** blockDim.x + threadIdx.x), the inner loops sequentially, except that an
** elementwise kernel (a PARALLEL loop around one VECTOR loop) runs one
** thread per element (see df_cuda_kernel_threads).  The same arithmetic as the CPU backend is printed (NaN-propagating max/min,
** truncating integer division that gives 0 for a zero divisor).
*/
#ifndef DF_CODEGEN_CUDA_H
#define DF_CODEGEN_CUDA_H

#include <stdio.h>

#include "compiler/kir.h"
#include "compiler/schedule.h"

/* How kernel k is launched: `blocks` blocks of `threads` threads, with
** start = 0 and end = *end.  An elementwise kernel (its PARALLEL loop
** holds only a VECTOR loop) runs one thread per element: the two loops
** are flattened, so that adjacent threads touch adjacent elements.  A
** reduction over many elements (a PARALLEL loop around accumulators and
** perfectly nested REDUCE loops) runs one block per PARALLEL index, its
** threads sharing the reduction.  Any other kernel runs one thread per
** PARALLEL index, its inner loops in the thread. */
void df_cuda_kernel_launch(const kir_kernel *k, int64_t *blocks, int *threads, int64_t *end);

/* Print the prelude and every kernel (distinct by hash) to f. */
void df_cuda_print(kir_kernel *const *ks, int n, FILE *f);

/* The CUDA C source of n kernels as a malloc'ed string (NULL: no memory). */
char *df_cuda_source(kir_kernel *const *ks, int n);

/*
** Library steps (DF_STEP_LIB: mask_index, scatter_add, rand, attention,
** attention_grad) get kernels of their own, specialised to the step's
** shapes: `extern "C" __global__ void dferc_step<i>_<op>(in..., out, long
** long *status, double *scratch)`, launched with df_cuda_lib_threads()
** threads (one per row, output column, element or query/key row; the
** kernel checks its bound).  They compute what the ops' reference
** kernels compute, in the order the reference sums, and write no
** out-of-range index.  A failed run-time check (a mask row with another
** count, an index out of range) records the first failure in status[0..5]
** = {code, step, a, b, c, d}, and the kernel goes on with in-range values;
** df_cuda_status_message() turns that into the reference kernel's message.
** Matrix products (DF_STEP_MATMUL) are the runtime's (cuBLAS).
*/
enum { DF_CUDA_ST_MASK_COUNT = 1, DF_CUDA_ST_MASK_REGION = 2, DF_CUDA_ST_INDEX = 3 };
#define DF_CUDA_STATUS_WORDS 8

/* 0, or DF_EUNSUPPORTED naming the op and dtype that have no kernel. */
int df_cuda_print_lib(const df_schedule *s, int step, FILE *f, df_err *err);
/* A library step runs as df_cuda_lib_parts() kernels in turn (2 for
** attention_grad: query rows, then key rows), part p with
** df_cuda_lib_threads(s, step, p) threads. */
int df_cuda_lib_parts(const df_schedule *s, int step);
int64_t df_cuda_lib_threads(const df_schedule *s, int step, int part);
/* The kernel name of part p of a library step: "dferc_step<i>_<op>"
** (with "_<p>" when it has several parts). */
void df_cuda_lib_symbol(const df_schedule *s, int step, int part, char *buf, size_t n);
/* Every library kernel takes (inputs..., output, long long *status, double
** *scratch): the bytes of scratch a step needs (attention_grad: each
** query row's log-sum-exp and do . o), shared by all steps. */
size_t df_cuda_lib_scratch(const df_schedule *s, int step);
/* Format status words (status[0] != 0) as the reference kernel's error. */
int df_cuda_status_message(const df_schedule *s, const long long *status, df_err *err);

/* The whole schedule as one translation unit: the prelude, every
** generated kernel (distinct by hash) and every library step's kernel.
** A malloc'ed string, or NULL with err. */
char *df_cuda_schedule_source(const df_schedule *s, df_err *err);

#endif

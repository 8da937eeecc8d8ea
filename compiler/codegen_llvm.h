/*
** codegen_llvm.h -- Kernel IR printed as LLVM IR, optimised for the host
** CPU (its real features, asked of LLVM; not its name) and compiled to
** machine code with ORC LLJIT.
**
** Each kernel K becomes `void K(void **bufs, int64_t start, int64_t end)`
** running iterations [start, end) of its PARALLEL loop, so a thread pool
** can split the range.  The module owns nothing of the caller's.
*/
#ifndef DF_CODEGEN_LLVM_H
#define DF_CODEGEN_LLVM_H

#include <stdint.h>

#include "cache/cache.h"
#include "compiler/kir.h"

typedef void (*df_kernel_fn)(void **bufs, int64_t start, int64_t end);

typedef struct df_llvm_jit df_llvm_jit;

/* 1 if this build has LLVM; else 0 and err says so. */
int df_llvm_available(df_err *err);

/* Compile n kernels into one JIT.  Each kernel is its own module, named
** by its Kernel IR hash (identical kernels are compiled once); its object
** code is looked up in and stored into `cache` (may be NULL) under the
** IR hash, the host's features and the toolchain.  dump_dir (may be NULL,
** and then the cache is not read): write NAME.kir, NAME.ll (optimised) and
** NAME.s per kernel there.  `stats` (may be NULL) gets hits and misses. */
typedef struct df_llvm_stats { int kernels, hits, misses; double seconds; } df_llvm_stats;
df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err);
df_kernel_fn df_llvm_lookup(df_llvm_jit *j, const kir_kernel *k);
void df_llvm_free(df_llvm_jit *j);

/* "llvm 14.0.6; x86-64 +avx512f,..." for reports and cache keys. */
const char *df_llvm_target_description(void);

#endif

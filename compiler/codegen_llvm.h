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
#include "compiler/tune.h"

typedef void (*df_kernel_fn)(void **bufs, int64_t start, int64_t end);

typedef struct df_llvm_jit df_llvm_jit;

/* 1 if this build has LLVM; else 0 and err says so. */
int df_llvm_available(df_err *err);

/* Compile n kernels into one JIT.  Each kernel is its own module, named
** by its Kernel IR hash (identical kernels are compiled once); its object
** code is looked up in and stored into `cache` (may be NULL) under the
** IR hash, the host's features and the toolchain.  dump_dir (may be NULL,
** and then the cache is not read): write NAME.kir, NAME.ll (optimised) and
** NAME.s per kernel there.  `stats` (may be NULL) gets hits and misses.
** The tuning mode is df_tune_mode() (compiler/tune.h). */
typedef struct df_llvm_stats {
  int kernels, hits, misses; /* kernels; served by the cache; compiled (or searched) */
  double seconds;
  int searched;              /* kernels tuned by this call (and stored) */
  int tuned_from_cache;      /* kernels that use a stored tuned winner */
} df_llvm_stats;
df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err);

/* The same with every option.  Per kernel, the configuration is: `force`
** when given; else the kernel's tuned winner stored in the cache (key
** field tuning = DF_TUNE_WINNER_KEY; its object code is used as is, unless
** dump_dir asks for the text, then it is compiled again with that
** configuration); else, with tune = DF_TUNE_SEARCH (and no dump_dir), a
** search (compiler/tune.h) whose winner is stored under that key (when
** another process stored one first, that one is read back and used, so
** that every process agrees); else the default.  The object code of a
** configuration that is not a stored winner is cached under tuning = the
** configuration's text (df_tune_format). */
typedef struct df_llvm_options {
  const char *dump_dir;         /* may be NULL */
  df_cache *cache;              /* may be NULL */
  int tune;                     /* DF_TUNE_DEFAULT or DF_TUNE_SEARCH */
  const df_tune_config *force;  /* may be NULL */
} df_llvm_options;
df_llvm_jit *df_llvm_compile_with(kir_kernel *const *ks, int n, const df_llvm_options *o, df_llvm_stats *stats,
                                  df_err *err);

/* The configuration kernel k was compiled with (NULL when it is not in j).
** Its `chunks` is for the runtime: split the PARALLEL range into that many
** chunks per thread (df_pool_run_chunks; 0 = the pool's default). */
const df_tune_config *df_llvm_kernel_config(const df_llvm_jit *j, const kir_kernel *k);
df_kernel_fn df_llvm_lookup(df_llvm_jit *j, const kir_kernel *k);
void df_llvm_free(df_llvm_jit *j);

/* "llvm 14.0.6; x86-64 +avx512f,..." for reports and cache keys. */
const char *df_llvm_target_description(void);
/* Whether the host CPU has an LLVM feature ("avx512bf16"). */
int df_llvm_host_has(const char *feature);

#endif

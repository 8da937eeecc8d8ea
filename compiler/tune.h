/*
** tune.h -- the autotuner's configuration of one kernel, its search mode
** and its process-wide counters.
**
** A configuration says how a code generator prints one Kernel IR kernel
** and how the runtime splits its PARALLEL range; it never changes what the
** kernel computes.  Its canonical text ("vw=512 il=0 ur=0 ch=0") is the
** cache key's `tuning` field of the object compiled with it, and the
** `config` value of a tuned winner.
**
** Modes (df_tune_mode): DF_TUNE_DEFAULT uses a winner stored in the kernel
** cache when there is one, else the heuristic default; DF_TUNE_SEARCH
** (`--tune`, DFERC_TUNE=1) searches every kernel that has no stored
** winner, checks each candidate against the Kernel IR interpreter
** (compiler/kir_interp.h) on random inputs before timing it, and stores the
** winner.  Either way the same cache gives the same kernels in every
** process: the first stored winner of a kernel is the one every process
** reads.
*/
#ifndef DF_TUNE_H
#define DF_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/kir.h"

typedef struct df_tune_config {
  int vector_width; /* "prefer-vector-width" of the kernel's function, bits: 512 or 256 */
  int interleave;   /* llvm.loop.interleave.count on VECTOR loops; 0 = LLVM's choice */
  int unroll;       /* llvm.loop.unroll.count on VECTOR loops; 0 = LLVM's choice, 1 = none */
  int chunks;       /* chunks per thread the PARALLEL range is split into; 0 = the pool's default */
  int wrong;        /* test only: a deliberately wrong kernel (see df_tune_inject_wrong) */
} df_tune_config;

/* The heuristic default (today's settings): 512-bit vectors, LLVM's
** interleave and unroll, the pool's chunking. */
void df_tune_default(const kir_kernel *k, df_tune_config *out);

/* Canonical text "vw=512 il=0 ur=0 ch=0" (" wrong=1" when set); returns out. */
char *df_tune_format(const df_tune_config *c, char *out, size_t n);
/* Parse that text (fields in any order, missing ones default); 0 or -1. */
int df_tune_parse(const char *s, df_tune_config *out);
int df_tune_equal(const df_tune_config *a, const df_tune_config *b);

/* The cache key `tuning` field of a kernel's tuned winner row. */
#define DF_TUNE_WINNER_KEY "winner"

/* Search mode: DF_TUNE_SEARCH when set by df_tune_set_mode() or, before
** that, when the environment has DFERC_TUNE set to anything but "" or "0". */
enum { DF_TUNE_DEFAULT = 0, DF_TUNE_SEARCH = 1 };
void df_tune_set_mode(int mode);
int df_tune_mode(void);

/* What the tuner did in this process (all code generators together). */
typedef struct df_tune_counters {
  int64_t searched;   /* kernels searched and stored */
  int64_t from_cache; /* kernels whose stored winner was used */
  int64_t defaults;   /* kernels compiled with the default (no winner, not searched) */
  int64_t untunable;  /* kernels search could not check (indirect or out-of-range indexing, too big) */
  int64_t candidates; /* candidates checked */
  int64_t rejected;   /* candidates whose results disagreed with the interpreter */
  double seconds;     /* time spent searching */
} df_tune_counters;
void df_tune_counters_get(df_tune_counters *out);
void df_tune_count(const df_tune_counters *add);

/* How the runtime runs a PARALLEL range: fn over [0, n) in chunks,
** `chunks` per thread (0 = default).  The runtime registers its thread
** pool here so that search times kernels as they run; without one, a range
** runs on the calling thread. */
typedef void (*df_tune_range_fn)(void *ctx, int64_t begin, int64_t end);
typedef void (*df_tune_parallel_fn)(int64_t n, int chunks, df_tune_range_fn fn, void *ctx);
void df_tune_set_parallel(df_tune_parallel_fn run);
void df_tune_run_parallel(int64_t n, int chunks, df_tune_range_fn fn, void *ctx);

/* Test only: when on, search adds a deliberately wrong candidate (its
** float stores are off by one) that the correctness check must reject. */
void df_tune_inject_wrong(int on);
int df_tune_wrong_injected(void);

#endif

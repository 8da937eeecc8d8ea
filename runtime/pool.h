/*
** pool.h -- the process's thread pool, and its one thread budget.
**
** There is one pool per process with DFERC_THREADS threads (default: the
** number of CPUs).  OpenBLAS is told to use the same number, and the two
** never run at once (a BLAS call is one step; the pool's threads sleep
** meanwhile), so the cores are never oversubscribed.
*/
#ifndef DF_POOL_H
#define DF_POOL_H

#include <stdint.h>

/* fn(ctx, begin, end) for one chunk of [0, n). */
typedef void (*df_pool_fn)(void *ctx, int64_t begin, int64_t end);

/* Number of threads of the budget (starts the pool on first use). */
int df_pool_threads(void);

/* Run fn over [0, n) split into chunks across the pool; returns when all
** chunks are done.  Runs inline when n is small or the pool is busy. */
void df_pool_run(int64_t n, df_pool_fn fn, void *ctx);

/* The same with `chunks` chunks per thread (0: the default, 4): a kernel's
** tuned parallel grain (df_tune_config.chunks).  The pool offers this
** function to the autotuner (df_tune_set_parallel) when the library is
** loaded, so that candidates are timed as they will run. */
void df_pool_run_chunks(int64_t n, int chunks, df_pool_fn fn, void *ctx);

#endif

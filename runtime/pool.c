/*
** pool.c -- see pool.h.  Workers wait on a condition variable for a job
** generation; chunks are claimed with an atomic counter.
*/
#include "runtime/pool.h"

#include "compiler/tune.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

extern void openblas_set_num_threads(int);

static struct {
  pthread_once_t once;
  int nthreads;
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  unsigned long generation;
  df_pool_fn fn;
  void *ctx;
  int64_t n, chunk;
  atomic_long next;
  int active;       /* workers still on the current job */
  atomic_int busy;  /* a job is running (nested calls run inline) */
} P = {PTHREAD_ONCE_INIT, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
       PTHREAD_COND_INITIALIZER, 0, NULL, NULL, 0, 0, 0, 0, 0};

static void run_chunks(void) {
  for (;;) {
    int64_t c = atomic_fetch_add(&P.next, 1);
    int64_t b = c * P.chunk;
    if (b >= P.n) break;
    int64_t e = b + P.chunk < P.n ? b + P.chunk : P.n;
    P.fn(P.ctx, b, e);
  }
}

static void *worker(void *arg) {
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&P.mu);
    while (P.generation == seen) pthread_cond_wait(&P.work, &P.mu);
    seen = P.generation;
    pthread_mutex_unlock(&P.mu);
    run_chunks();
    pthread_mutex_lock(&P.mu);
    if (--P.active == 0) pthread_cond_signal(&P.done);
    pthread_mutex_unlock(&P.mu);
  }
  return arg;
}

static void start(void) {
  const char *env = getenv("DFERC_THREADS");
  long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  P.nthreads = (int)n;
  openblas_set_num_threads((int)n);
  /* workers' stacks hold kernels' SCRATCH buffers (a generated GEMM's
  ** packed panels, up to about 1.3 MB): 16 MB, whatever the default */
  pthread_attr_t attr;
  int have_attr = pthread_attr_init(&attr) == 0;
  if (have_attr) pthread_attr_setstacksize(&attr, (size_t)16 << 20);
  for (int i = 1; i < P.nthreads; i++) { /* the caller is thread 0 */
    pthread_t t;
    if (pthread_create(&t, have_attr ? &attr : NULL, worker, NULL) != 0) {
      P.nthreads = i;
      break;
    }
    pthread_detach(t);
  }
  if (have_attr) pthread_attr_destroy(&attr);
}

int df_pool_threads(void) {
  pthread_once(&P.once, start);
  return P.nthreads;
}

void df_pool_run(int64_t n, df_pool_fn fn, void *ctx) { df_pool_run_chunks(n, 0, fn, ctx); }

void df_pool_run_chunks(int64_t n, int per_thread, df_pool_fn fn, void *ctx) {
  pthread_once(&P.once, start);
  if (n <= 0) return;
  int expected = 0;
  if (P.nthreads == 1 || n == 1 || !atomic_compare_exchange_strong(&P.busy, &expected, 1)) {
    fn(ctx, 0, n);
    return;
  }
  int64_t chunks = (int64_t)P.nthreads * (per_thread > 0 ? per_thread : 4);
  if (chunks > n) chunks = n;
  pthread_mutex_lock(&P.mu);
  P.fn = fn;
  P.ctx = ctx;
  P.n = n;
  P.chunk = (n + chunks - 1) / chunks;
  atomic_store(&P.next, 0);
  P.active = P.nthreads - 1;
  P.generation++;
  pthread_cond_broadcast(&P.work);
  pthread_mutex_unlock(&P.mu);
  run_chunks();
  pthread_mutex_lock(&P.mu);
  while (P.active > 0) pthread_cond_wait(&P.done, &P.mu);
  pthread_mutex_unlock(&P.mu);
  atomic_store(&P.busy, 0);
}

/* The autotuner times candidates on this pool. */
__attribute__((constructor)) static void offer_to_tuner(void) { df_tune_set_parallel(df_pool_run_chunks); }

/*
** loader.h -- background loading: worker threads make items ahead of the
** consumer, who receives them in index order.
**
** Items are numbered 0 .. n-1.  Item i is made by the caller's callback
** fn(ctx, i, worker, seed_i, err) on one of the worker threads, where
** seed_i = df_loader_item_seed(seed, i) depends only on the loader's seed
** and i, never on the worker: the same seed gives the same items however
** many workers run and whichever finishes first.  The callback returns a
** tensor (the loader takes its reference) or NULL with err set.
**
** At most `depth` items are made or held ahead of the consumer: a worker
** takes item i only once the consumer has taken item i - depth, so memory
** is bounded and the order costs nothing.  df_loader_next() hands out
** item 0, 1, 2, ... in turn, waiting when the next one is not ready yet.
** An item whose callback failed (a missing, empty or undecodable clip) is
** skipped: the warning function gets one line naming it (by default
** "dferc: warning: skipping item I: <message>" on stderr, printed on the
** consumer's thread in index order), the skip is counted, and the next
** item is returned instead.  No failure ends the run.
**
** Stats: waited_s is the time the consumer spent inside df_loader_next()
** (waiting for data); held_s the time between a df_loader_next() return
** and the next call (the consumer's own work).  The data-wait fraction is
** waited_s / (waited_s + held_s).
**
** df_loader_close() may be called at any time (before the end, with a
** full queue): it lets running callbacks finish, joins every worker and
** frees the items not handed out.  The callback must therefore return in
** bounded time.  One consumer thread calls next/stats/close; the callback
** runs on several threads at once and must be thread-safe for distinct i.
** With 0 workers the consumer makes each item itself inside next().
*/
#ifndef DF_LOADER_H
#define DF_LOADER_H

#include <stdint.h>

#include "compiler/err.h"
#include "runtime/tensor.h"

typedef df_tensor *(*df_loader_fn)(void *ctx, int64_t index, int worker, uint64_t seed,
                                   df_err *err);

typedef struct {
  int64_t n_items;
  int workers;    /* threads, 0 .. 64; 0 makes items inside next() */
  int depth;      /* items made or held ahead of the consumer, >= 1 */
  uint64_t seed;
  df_loader_fn fn;
  void *ctx;      /* passed to fn; must outlive the loader */
  /* One warning line (no trailing newline) per skipped item; NULL prints
  ** "dferc: warning: <line>" on stderr.  Called on the consumer's thread. */
  void (*warn)(void *warn_ctx, const char *line);
  void *warn_ctx;
} df_loader_opts;

typedef struct {
  double waited_s, held_s;
  int64_t items;   /* handed out */
  int64_t skipped; /* failed and skipped */
} df_loader_stats;

typedef struct df_loader df_loader;

/* Start the workers; NULL with err set (bad options, no thread). */
df_loader *df_loader_new(const df_loader_opts *opts, df_err *err);

/* The next item in index order: returns 1 and the tensor in *out (the
** caller's reference) and its index in *index (may be NULL); 0 at the end. */
int df_loader_next(df_loader *l, df_tensor **out, int64_t *index);

void df_loader_get_stats(df_loader *l, df_loader_stats *st);

/* Stop, join the workers and free everything; NULL is a no-op. */
void df_loader_close(df_loader *l);

/* The seed handed to the callback for item `index`. */
uint64_t df_loader_item_seed(uint64_t seed, int64_t index);

#endif

/*
** loader.c -- background loading (see loader.h).
**
** A ring of `depth` slots; item i lives in slot i % depth.  One mutex
** guards everything: `claim` (the next item a worker may take), `cur`
** (the next item the consumer takes), the slots and `stop`.  Invariant:
** cur <= claim <= min(n, cur + depth), so the slot of a claimed item is
** always free (its previous user, item i - depth < cur, was taken).
** Workers wait on `space` (claim reached cur + depth), the consumer on
** `ready` (its slot is not done yet).  Callbacks run unlocked.
*/
#define _GNU_SOURCE
#include "runtime/loader.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compiler/crng.h"

#define MAX_WORKERS 64

enum { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

typedef struct {
  int state;
  int64_t index;
  df_tensor *t; /* NULL when the callback failed (err says why) */
  df_err err;
} slot;

struct df_loader {
  df_loader_opts o;
  pthread_mutex_t mu;
  pthread_cond_t ready, space;
  slot *slots;
  int64_t claim, cur;
  int stop;
  pthread_t threads[MAX_WORKERS];
  int started;
  df_loader_stats st;
  double last_return; /* when next() last returned an item; < 0 before */
};

typedef struct {
  df_loader *l;
  int id;
} worker_arg;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t df_loader_item_seed(uint64_t seed, int64_t index) {
  return df_crng_mix(seed ^ df_crng_mix((uint64_t)index));
}

/* Run the callback for item i; a NULL result always carries a message. */
static df_tensor *make_item(df_loader *l, int64_t i, int worker, df_err *e) {
  df_err_clear(e);
  df_tensor *t = l->o.fn(l->o.ctx, i, worker, df_loader_item_seed(l->o.seed, i), e);
  if (!t && !e->code) df_err_set(e, DF_ERUNTIME, "item %lld: failed without a message", (long long)i);
  if (t) df_err_clear(e);
  return t;
}

static void *worker_main(void *p) {
  worker_arg *a = p;
  df_loader *l = a->l;
  int id = a->id;
  free(a);
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && l->claim < l->o.n_items && l->claim >= l->cur + l->o.depth)
      pthread_cond_wait(&l->space, &l->mu);
    if (l->stop || l->claim >= l->o.n_items) break;
    int64_t i = l->claim++;
    slot *s = &l->slots[i % l->o.depth];
    s->state = SLOT_BUSY;
    s->index = i;
    pthread_mutex_unlock(&l->mu);
    df_err e;
    df_tensor *t = make_item(l, i, id, &e);
    pthread_mutex_lock(&l->mu);
    s->t = t;
    s->err = e;
    s->state = SLOT_DONE;
    pthread_cond_signal(&l->ready);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static void default_warn(void *ctx, const char *line) {
  (void)ctx;
  fprintf(stderr, "dferc: warning: %s\n", line);
}

df_loader *df_loader_new(const df_loader_opts *opts, df_err *err) {
  if (!opts || !opts->fn || opts->n_items < 0 || opts->workers < 0 ||
      opts->workers > MAX_WORKERS || opts->depth < 1 || opts->depth > (1 << 20)) {
    df_err_set(err, DF_EINVAL, "loader: bad options (items >= 0, workers 0..%d, depth >= 1, a callback)",
               MAX_WORKERS);
    return NULL;
  }
  df_loader *l = calloc(1, sizeof *l);
  if (l) l->slots = calloc((size_t)opts->depth, sizeof *l->slots);
  if (!l || !l->slots) {
    if (l) free(l);
    df_err_set(err, DF_ENOMEM, "loader: out of memory");
    return NULL;
  }
  l->o = *opts;
  if (!l->o.warn) l->o.warn = default_warn;
  l->last_return = -1;
  int ok = pthread_mutex_init(&l->mu, NULL) == 0;
  int ok_r = ok && pthread_cond_init(&l->ready, NULL) == 0;
  int ok_s = ok_r && pthread_cond_init(&l->space, NULL) == 0;
  if (!ok_s) {
    if (ok_r) pthread_cond_destroy(&l->ready);
    if (ok) pthread_mutex_destroy(&l->mu);
    free(l->slots);
    free(l);
    df_err_set(err, DF_ERUNTIME, "loader: cannot create a mutex or condition");
    return NULL;
  }
  /* Workers block every signal: handlers (SIGINT, SIGALRM) run on the
  ** consumer's thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int w = 0; w < opts->workers; w++) {
    worker_arg *a = malloc(sizeof *a);
    if (!a) break;
    *a = (worker_arg){l, w};
    if (pthread_create(&l->threads[w], NULL, worker_main, a) != 0) {
      free(a);
      break;
    }
    l->started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (l->started < opts->workers) {
    df_loader_close(l);
    df_err_set(err, DF_ERUNTIME, "loader: cannot start %d worker threads", opts->workers);
    return NULL;
  }
  return l;
}

int df_loader_next(df_loader *l, df_tensor **out, int64_t *index) {
  *out = NULL;
  double t0 = now_s();
  pthread_mutex_lock(&l->mu);
  if (l->last_return >= 0) l->st.held_s += t0 - l->last_return;
  int got = 0;
  while (!got && l->cur < l->o.n_items) {
    int64_t i = l->cur;
    df_tensor *t;
    df_err e;
    if (l->started == 0) { /* no workers: make it here */
      l->claim = ++l->cur;
      pthread_mutex_unlock(&l->mu);
      t = make_item(l, i, 0, &e);
      pthread_mutex_lock(&l->mu);
    } else {
      slot *s = &l->slots[i % l->o.depth];
      while (!(s->state == SLOT_DONE && s->index == i)) pthread_cond_wait(&l->ready, &l->mu);
      t = s->t;
      e = s->err;
      s->t = NULL;
      s->state = SLOT_FREE;
      l->cur++;
      pthread_cond_broadcast(&l->space);
    }
    if (t) {
      l->st.items++;
      *out = t;
      if (index) *index = i;
      got = 1;
    } else {
      l->st.skipped++;
      char line[DF_ERR_MSG_MAX + 64];
      snprintf(line, sizeof line, "skipping item %lld: %s", (long long)i, e.msg);
      pthread_mutex_unlock(&l->mu); /* the warning may call back into the loader */
      l->o.warn(l->o.warn_ctx, line);
      pthread_mutex_lock(&l->mu);
    }
  }
  double t1 = now_s();
  l->st.waited_s += t1 - t0;
  l->last_return = got ? t1 : -1;
  pthread_mutex_unlock(&l->mu);
  return got;
}

void df_loader_get_stats(df_loader *l, df_loader_stats *st) {
  pthread_mutex_lock(&l->mu);
  *st = l->st;
  pthread_mutex_unlock(&l->mu);
}

void df_loader_close(df_loader *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->space);
  pthread_mutex_unlock(&l->mu);
  for (int w = 0; w < l->started; w++) pthread_join(l->threads[w], NULL);
  for (int s = 0; s < l->o.depth; s++) df_tensor_unref(l->slots[s].t);
  pthread_cond_destroy(&l->space);
  pthread_cond_destroy(&l->ready);
  pthread_mutex_destroy(&l->mu);
  free(l->slots);
  free(l);
}

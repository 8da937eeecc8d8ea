/*
** tune.c -- see tune.h.
*/
#include "compiler/tune.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void df_tune_default(const kir_kernel *k, df_tune_config *out) {
  (void)k;
  memset(out, 0, sizeof *out);
  out->vector_width = 512;
}

char *df_tune_format(const df_tune_config *c, char *out, size_t n) {
  snprintf(out, n, "vw=%d il=%d ur=%d ch=%d%s", c->vector_width, c->interleave, c->unroll, c->chunks,
           c->wrong ? " wrong=1" : "");
  return out;
}

int df_tune_parse(const char *s, df_tune_config *out) {
  df_tune_default(NULL, out);
  if (!s) return -1;
  while (*s) {
    while (*s == ' ') s++;
    if (!*s) break;
    char name[16];
    int v, used = 0;
    if (sscanf(s, "%15[a-z]=%d%n", name, &v, &used) != 2 || used == 0) return -1;
    if (!strcmp(name, "vw") && (v == 128 || v == 256 || v == 512)) out->vector_width = v;
    else if (!strcmp(name, "il") && v >= 0 && v <= 16) out->interleave = v;
    else if (!strcmp(name, "ur") && v >= 0 && v <= 16) out->unroll = v;
    else if (!strcmp(name, "ch") && v >= 0 && v <= 64) out->chunks = v;
    else if (!strcmp(name, "wrong")) out->wrong = v != 0;
    else return -1;
    s += used;
  }
  return 0;
}

int df_tune_equal(const df_tune_config *a, const df_tune_config *b) {
  return a->vector_width == b->vector_width && a->interleave == b->interleave && a->unroll == b->unroll &&
         a->chunks == b->chunks && a->wrong == b->wrong;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int mode_set, mode;
static df_tune_counters counters;
static df_tune_parallel_fn parallel;
static int wrong;

void df_tune_set_mode(int m) {
  pthread_mutex_lock(&mu);
  mode = m;
  mode_set = 1;
  pthread_mutex_unlock(&mu);
}

int df_tune_mode(void) {
  pthread_mutex_lock(&mu);
  int m = mode;
  if (!mode_set) {
    const char *e = getenv("DFERC_TUNE");
    m = e && *e && strcmp(e, "0") != 0 ? DF_TUNE_SEARCH : DF_TUNE_DEFAULT;
  }
  pthread_mutex_unlock(&mu);
  return m;
}

void df_tune_counters_get(df_tune_counters *out) {
  pthread_mutex_lock(&mu);
  *out = counters;
  pthread_mutex_unlock(&mu);
}

void df_tune_count(const df_tune_counters *a) {
  pthread_mutex_lock(&mu);
  counters.searched += a->searched;
  counters.from_cache += a->from_cache;
  counters.defaults += a->defaults;
  counters.untunable += a->untunable;
  counters.candidates += a->candidates;
  counters.rejected += a->rejected;
  counters.seconds += a->seconds;
  pthread_mutex_unlock(&mu);
}

void df_tune_set_parallel(df_tune_parallel_fn run) { parallel = run; }

void df_tune_run_parallel(int64_t n, int chunks, df_tune_range_fn fn, void *ctx) {
  if (parallel) parallel(n, chunks, fn, ctx);
  else if (n > 0) fn(ctx, 0, n);
}

void df_tune_inject_wrong(int on) { wrong = on; }
int df_tune_wrong_injected(void) { return wrong; }

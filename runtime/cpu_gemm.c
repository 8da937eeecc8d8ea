/*
** cpu_gemm.c -- see cpu_gemm.h.
*/
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "compiler/codegen_llvm.h"
#include "compiler/tune.h"
#include "runtime/cpu_gemm.h"
#include "runtime/device.h"
#include "runtime/pool.h"
#include "runtime/tensor.h"

extern char *openblas_get_corename(void);

/* The generated GEMM's tile sizes outside the tuner: the defaults, or
** $DFERC_GEMM_TILES "mr,nr,kc,nc,mc" (for measuring others). */
static df_gemm_params default_params(int bf16) {
  df_gemm_params prm = df_gemm_default;
  const char *e = getenv("DFERC_GEMM_TILES");
  if (e) sscanf(e, "%d,%d,%d,%d,%d", &prm.mr, &prm.nr, &prm.kc, &prm.nc_max, &prm.mc);
  prm.bf16 = bf16;
  prm.par = df_pool_threads();
  const char *d = getenv("DFERC_GEMM_DIRECT_A");
  if (d) prm.direct_a = atoi(d) != 0;
  return prm;
}

/* The candidates the tuner times against OpenBLAS. */
static const df_gemm_params candidates[] = {
    {12, 32, 256, 1024, 192, 0, 0, 1}, {12, 32, 128, 1024, 192, 0, 0, 1}, {8, 48, 256, 1024, 192, 0, 0, 1},
    {14, 32, 256, 1024, 196, 0, 0, 1}, {12, 32, 256, 1024, 192, 0, 0, 0},
};
#define NCAND ((int)(sizeof candidates / sizeof candidates[0]))

static void format_params(const df_gemm_params *p, char *out, size_t n) {
  snprintf(out, n, "generated mr=%d nr=%d kc=%d nc=%d mc=%d%s", p->mr, p->nr, p->kc, p->nc_max, p->mc,
           p->direct_a ? "" : " packed_a");
}

static int parse_params(const char *s, df_gemm_params *p) {
  *p = df_gemm_default;
  p->par = df_pool_threads();
  int used = 0;
  if (sscanf(s, "generated mr=%d nr=%d kc=%d nc=%d mc=%d%n", &p->mr, &p->nr, &p->kc, &p->nc_max, &p->mc, &used) != 5)
    return -1;
  p->direct_a = strcmp(s + used, " packed_a") != 0;
  return 0;
}

/* A stored choice's text as DF_GEMM_BLAS or DF_GEMM_GENERATED (*p), or
** -1 when it is not one. */
static int choice_of(const char *config, df_gemm_params *p) {
  if (strcmp(config, "blas") == 0) return DF_GEMM_BLAS;
  return parse_params(config, p) == 0 ? DF_GEMM_GENERATED : -1;
}

/* The cache key of node n's choice: its shapes (all the GEMM depends on),
** the host and the OpenBLAS core it is timed against. */
typedef struct choice_key {
  df_cache_key key;
  char hex[24], toolchain[160], options[64];
} choice_key;

static void key_for(const df_graph *g, const df_node *n, choice_key *ck) {
  char sig[512], sa[128], sb[128], sc[128];
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  snprintf(sig, sizeof sig, "matmul f32 %s %s -> %s ta=%d tb=%d", df_shape_str(sa, sizeof sa, a->ndim, a->shape),
           df_shape_str(sb, sizeof sb, b->ndim, b->shape), df_shape_str(sc, sizeof sc, n->ndim, n->shape),
           n->attrs.ia[0] != 0, n->attrs.ia[1] != 0);
  snprintf(ck->hex, sizeof ck->hex, "%016llx",
           (unsigned long long)df_cache_fnv1a64(DF_CACHE_FNV_OFFSET, sig, strlen(sig)));
  snprintf(ck->toolchain, sizeof ck->toolchain, "openblas %s", openblas_get_corename());
  memset(&ck->key, 0, sizeof ck->key);
  ck->key.ir_hash = ck->hex;
  ck->key.backend = "cpu";
  ck->key.device = "host";
  ck->key.arch = df_llvm_target_description(); /* LLVM's version and the CPU's features */
  ck->key.toolchain = ck->toolchain;
  ck->key.dferc_version = PACKAGE_VERSION;
  snprintf(ck->options, sizeof ck->options, "gemm-choice-1 threads=%d", df_pool_threads());
  ck->key.options = ck->options;
  ck->key.tuning = "gemm-winner";
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct run_ctx {
  df_kernel_fn fn;
  void **bufs;
} run_ctx;

static void run_range(void *ctx, int64_t b, int64_t e) {
  run_ctx *r = ctx;
  r->fn(r->bufs, b, e);
}

typedef struct bench_bufs {
  float *A, *B, *C, *want;
  size_t na, nb, nc;
} bench_bufs;

/* Median of 5 timed runs after a warm-up: OpenBLAS (fn NULL) or fn; the
** fastest and slowest in lo, hi. */
static double time_one(const df_graph *g, const df_node *n, bench_bufs *bb, df_kernel_fn fn, int64_t extent,
                       double *lo, double *hi) {
  void *bufs[3] = {bb->A, bb->B, bb->C};
  run_ctx r = {fn, bufs};
  double t[5];
  for (int i = -1; i < 5; i++) {
    double s = now_s();
    if (fn) df_pool_run_chunks(extent, 0, run_range, &r);
    else df_cpu_matmul_blas(g, n, bb->A, bb->B, bb->C);
    if (i >= 0) t[i] = now_s() - s;
  }
  qsort(t, 5, sizeof t[0], cmp_d);
  *lo = t[0];
  *hi = t[4];
  return t[2];
}

/* The tuner's search for node n: OpenBLAS and each candidate that agrees
** with it; returns the winner's choice, its text in cfg. */
static int search(const df_graph *g, const df_node *n, df_gemm_params *best, char *cfg, size_t ncfg, char *times,
                  size_t ntimes, df_err *err) {
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  bench_bufs bb = {0};
  bb.na = (size_t)df_shape_numel(a->ndim, a->shape);
  bb.nb = (size_t)df_shape_numel(b->ndim, b->shape);
  bb.nc = (size_t)df_shape_numel(n->ndim, n->shape);
  if ((bb.na + bb.nb + 2 * bb.nc) > ((size_t)256 << 20)) { /* over 1 GB of floats: not searched */
    snprintf(cfg, ncfg, "blas");
    snprintf(times, ntimes, "{\"candidates\": [], \"not_searched\": \"too big\"}");
    return DF_GEMM_BLAS;
  }
  bb.A = malloc(bb.na * 4 + 64), bb.B = malloc(bb.nb * 4 + 64);
  bb.C = malloc(bb.nc * 4 + 64), bb.want = malloc(bb.nc * 4 + 64);
  int choice = DF_GEMM_BLAS, rc = 0;
  if (!bb.A || !bb.B || !bb.C || !bb.want) {
    rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory tuning a product (%s:%d)", n->file, n->line);
    goto done;
  }
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < bb.na + bb.nb; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float v = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    if (i < bb.na) bb.A[i] = v;
    else bb.B[i - bb.na] = v;
  }
  double lo, hi, tb = time_one(g, n, &bb, NULL, 0, &lo, &hi), best_t = tb;
  memcpy(bb.want, bb.C, bb.nc * 4);
  double wn = 0;
  for (size_t i = 0; i < bb.nc; i++) wn += (double)bb.want[i] * bb.want[i];
  snprintf(cfg, ncfg, "blas");
  /* the times as the kernel tuner writes them (compiler/tune.c; dferc cache list) */
  size_t used = (size_t)snprintf(times, ntimes,
                                 "{\"candidates\": [{\"config\": \"blas\", \"median_s\": %.6g, \"min_s\": %.6g, "
                                 "\"max_s\": %.6g}",
                                 tb, lo, hi);
  for (int c = 0; c < NCAND; c++) {
    df_err e = {0};
    df_gemm_params cand = candidates[c];
    cand.par = df_pool_threads();
    kir_kernel *k = df_gemm_kernel(g, n, &cand, &e);
    df_llvm_options o = {0};
    o.cache = df_kernel_cache();
    df_llvm_jit *j = k ? df_llvm_compile_with(&k, 1, &o, NULL, &e) : NULL;
    df_kernel_fn fn = j ? df_llvm_lookup(j, k) : NULL;
    char text[128];
    format_params(&candidates[c], text, sizeof text);
    if (fn) {
      memset(bb.C, 0xff, bb.nc * 4); /* NaN: a column it forgot shows */
      double t = time_one(g, n, &bb, fn, k->parallel_extent, &lo, &hi), d = 0;
      for (size_t i = 0; i < bb.nc; i++) d += ((double)bb.C[i] - bb.want[i]) * ((double)bb.C[i] - bb.want[i]);
      int agrees = d == d && d <= 1e-10 * (wn > 0 ? wn : 1);
      if (used < ntimes)
        used += (size_t)snprintf(times + used, ntimes - used,
                                 ", {\"config\": \"%s\", \"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g%s}",
                                 text, t, lo, hi, agrees ? "" : ", \"rejected\": true");
      if (agrees && t < best_t) {
        best_t = t;
        *best = cand;
        choice = DF_GEMM_GENERATED;
        snprintf(cfg, ncfg, "%s", text);
      }
    }
    df_llvm_free(j);
    kir_free(k);
  }
  if (used < ntimes) snprintf(times + used, ntimes - used, "]}");
done:
  free(bb.A), free(bb.B), free(bb.C), free(bb.want);
  return rc ? rc : choice;
}

int df_cpu_gemm_choose(const df_graph *g, const df_node *n, df_gemm_params *prm, char *why, size_t nwhy,
                       df_err *err) {
  char tmp[160];
  if (!why) why = tmp, nwhy = sizeof tmp;
  int mode = df_cpu_gemm();
  if (mode == DF_GEMM_BLAS || n->dtype != DF_F32) {
    snprintf(why, nwhy, "blas");
    return DF_GEMM_BLAS;
  }
  if (mode == DF_GEMM_GENERATED || mode == DF_GEMM_BF16) {
    *prm = default_params(mode == DF_GEMM_BF16);
    format_params(prm, why, nwhy);
    if (mode == DF_GEMM_BF16) snprintf(why + strlen(why), nwhy - strlen(why), " bf16");
    return mode;
  }
  /* auto: a stored winner, else a search (under --tune), else OpenBLAS */
  df_cache *cache = df_kernel_cache();
  choice_key ck;
  key_for(g, n, &ck);
  df_cache_entry ent = {0};
  if (cache && df_cache_probe(cache, &ck.key, &ent, NULL) == 1) { /* a miss is the usual case: not counted */
    int c = choice_of(ent.config, prm);
    if (c >= 0) snprintf(why, nwhy, "%s (stored)", ent.config);
    df_cache_entry_free(&ent);
    if (c >= 0) return c;
  }
  if (df_tune_mode() != DF_TUNE_SEARCH) {
    snprintf(why, nwhy, "blas");
    return DF_GEMM_BLAS;
  }
  char cfg[160], times[2048];
  int c = search(g, n, prm, cfg, sizeof cfg, times, sizeof times, err);
  if (c < 0) return c;
  if (cache) {
    /* another process may have stored its winner first: every process uses that one */
    if (df_cache_put(cache, &ck.key, "", 0, cfg, times, NULL) == DF_CACHE_KEPT &&
        df_cache_get(cache, &ck.key, &ent, NULL) == 1) {
      int s = choice_of(ent.config, prm);
      if (s >= 0) {
        c = s;
        snprintf(cfg, sizeof cfg, "%s", ent.config);
      }
      df_cache_entry_free(&ent);
    }
  }
  snprintf(why, nwhy, "%s (tuned)", cfg);
  return c;
}

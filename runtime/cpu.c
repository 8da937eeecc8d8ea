/*
** cpu.c -- the `cpu` device: a graph fused into Kernel IR kernels
** (compiler/schedule), compiled for the host by LLVM, run on the thread
** pool with a static memory plan; dense products through OpenBLAS.
**
** Run-time layout: one arena (the memory plan's peak) for intermediates,
** allocated at the first run and kept; constants computed at compile
** time; inputs and parameters read in place from the caller's host
** tensors (no copy).  mask_index, scatter_add and rand run their
** reference kernels on the host (float64), a small share of a step.
** With df_cpu_set_gemm(DF_GEMM_GENERATED) (or DFERC_GEMM=generated), the
** float32 products are Kernel IR GEMMs (compiler/gemm) instead.
*/
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compiler/codegen_llvm.h"
#include "compiler/gemm.h"
#include "compiler/schedule.h"
#include "ops/ops_impl.h" /* df_scatter_add_walk, the reference scatter_add's */
#include "runtime/attention_cpu.h"
#include "runtime/recon_cpu.h"
#include "runtime/cpu_gemm.h"
#include "runtime/profile.h"
#include "runtime/device.h"
#include "runtime/pool.h"

struct df_plan {
  df_schedule *s;
  df_llvm_jit *jit;
  df_kernel_fn *fns;
  int *chunks;           /* per step: pool chunks per thread (0: the pool's default; tuned) */
  kir_kernel **gemm;     /* per step: a MATMUL step's generated GEMM (owned), or NULL for OpenBLAS */
  void *arena;
  int check_finite;
  df_llvm_stats codegen;
};

static int cpu_available(df_err *err) { return df_llvm_available(err) ? 0 : DF_EUNSUPPORTED; }

static int cpu_supports(df_op op) { return df_op_info(op) != NULL; }

static void cpu_plan_free(df_plan *p) {
  if (!p) return;
  df_llvm_free(p->jit);
  for (int i = 0; p->gemm && p->s && i < p->s->nsteps; i++) kir_free(p->gemm[i]);
  free(p->gemm);
  df_schedule_free(p->s);
  free(p->fns);
  free(p->chunks);
  free(p->arena);
  free(p);
}

/* Which products the plans compiled from now on generate. */
static int gemm_mode = -1; /* -1: from $DFERC_GEMM at the first compile */

void df_cpu_set_gemm(int mode) { gemm_mode = mode; }

int df_cpu_gemm(void) {
  if (gemm_mode < 0) {
    const char *e = getenv("DFERC_GEMM");
    gemm_mode = DF_GEMM_AUTO;
    if (e && strcmp(e, "blas") == 0) gemm_mode = DF_GEMM_BLAS;
    if (e && strcmp(e, "generated") == 0) gemm_mode = DF_GEMM_GENERATED;
    if (e && strcmp(e, "bf16") == 0 && df_llvm_host_has("avx512bf16")) gemm_mode = DF_GEMM_BF16;
  }
  return gemm_mode;
}

static df_plan *cpu_compile(const df_graph *g, const df_node_id *outputs, int n_out, df_err *err) {
  df_plan *p = calloc(1, sizeof *p);
  if (!p) {
    df_err_set(err, DF_ENOMEM, "cpu: out of memory");
    return NULL;
  }
  p->s = df_schedule_build(g, outputs, n_out, err);
  if (!p->s) {
    cpu_plan_free(p);
    return NULL;
  }
  int nk = 0;
  kir_kernel **ks = malloc((size_t)(p->s->nsteps + 1) * sizeof *ks);
  p->fns = calloc((size_t)p->s->nsteps + 1, sizeof *p->fns);
  p->chunks = calloc((size_t)p->s->nsteps + 1, sizeof *p->chunks);
  p->gemm = calloc((size_t)p->s->nsteps + 1, sizeof *p->gemm);
  if (!ks || !p->fns || !p->chunks || !p->gemm) {
    free(ks);
    cpu_plan_free(p);
    df_err_set(err, DF_ENOMEM, "cpu: out of memory");
    return NULL;
  }
  for (int i = 0; i < p->s->nsteps; i++) {
    df_step *st = &p->s->steps[i];
    if (st->kind == DF_STEP_KERNEL) ks[nk++] = st->kernel;
    const df_node *mm = st->kind == DF_STEP_MATMUL ? df_graph_node(g, st->node) : NULL;
    df_gemm_params prm;
    int choice = mm && mm->dtype == DF_F32 ? df_cpu_gemm_choose(g, mm, &prm, NULL, 0, err) : DF_GEMM_BLAS;
    if (choice < 0) {
      free(ks);
      cpu_plan_free(p);
      return NULL;
    }
    if (choice != DF_GEMM_BLAS) {
      p->gemm[i] = df_gemm_kernel(g, mm, &prm, err);
      if (!p->gemm[i]) {
        free(ks);
        cpu_plan_free(p);
        return NULL;
      }
      ks[nk++] = p->gemm[i];
    }
  }
  if (nk > 0) {
    p->jit = df_llvm_compile(ks, nk, df_dump_dir(), df_kernel_cache(), &p->codegen, err);
    if (!p->jit) {
      free(ks);
      cpu_plan_free(p);
      return NULL;
    }
  }
  free(ks);
  for (int i = 0; i < p->s->nsteps; i++) {
    df_step *st = &p->s->steps[i];
    kir_kernel *kk = st->kind == DF_STEP_KERNEL ? st->kernel : p->gemm[i];
    if (!kk) continue;
    p->fns[i] = df_llvm_lookup(p->jit, kk);
    const df_tune_config *tc = df_llvm_kernel_config(p->jit, kk);
    p->chunks[i] = tc ? tc->chunks : 0;
    if (!p->fns[i]) {
      df_err_set(err, DF_EUNSUPPORTED, "cpu: kernel %s did not compile", kk->name);
      cpu_plan_free(p);
      return NULL;
    }
  }
  return p;
}

static void cpu_stats(const df_plan *p, df_plan_stats *st) {
  st->nodes = p->s->nsteps;
  st->peak_bytes = (double)p->s->arena_bytes;
  st->kernels = p->codegen.kernels;
  st->cache_hits = p->codegen.hits;
  st->cache_misses = p->codegen.misses;
  st->codegen_seconds = p->codegen.seconds;
}

static void cpu_set_check(df_plan *p, int on) { p->check_finite = on; }

typedef struct kctx {
  df_kernel_fn fn;
  void **bufs;
} kctx;

static void run_range(void *ctx, int64_t b, int64_t e) {
  kctx *k = ctx;
  k->fn(k->bufs, b, e);
}

extern void openblas_set_num_threads(int);

/* The batched products of one matmul step, for the pool. */
typedef struct mm_batch {
  int f64;
  enum CBLAS_TRANSPOSE TA, TB;
  int M, N, K, lda, ldb;
  void *A, *B, *C;
  int64_t amat, bmat;
  size_t es;
  int nb;
  const int64_t *shape;
  int64_t sa[DF_MAX_DIMS], sb[DF_MAX_DIMS];
} mm_batch;

static void mm_range(void *ctx, int64_t b0, int64_t b1) {
  const mm_batch *m = ctx;
  for (int64_t bi = b0; bi < b1; bi++) {
    int64_t oa = 0, ob = 0, rest = bi;
    for (int d = m->nb - 1; d >= 0; d--) { /* the batch index's broadcast offsets */
      int64_t i = rest % m->shape[d];
      rest /= m->shape[d];
      oa += i * m->sa[d];
      ob += i * m->sb[d];
    }
    char *pa = (char *)m->A + (size_t)(oa * m->amat) * m->es, *pb = (char *)m->B + (size_t)(ob * m->bmat) * m->es;
    char *pc = (char *)m->C + (size_t)(bi * m->M * m->N) * m->es;
    if (m->f64)
      cblas_dgemm(CblasRowMajor, m->TA, m->TB, m->M, m->N, m->K, 1.0, (double *)pa, m->lda, (double *)pb, m->ldb,
                  0.0, (double *)pc, m->N);
    else
      cblas_sgemm(CblasRowMajor, m->TA, m->TB, m->M, m->N, m->K, 1.0f, (float *)pa, m->lda, (float *)pb, m->ldb,
                  0.0f, (float *)pc, m->N);
  }
}

/* One product split by rows of C over the pool, each part a
** single-threaded OpenBLAS call: the pool owns the cores, so OpenBLAS's
** own threads (which spin for a while after each call) never compete with
** the kernels that run next. */
typedef struct mm_rows {
  int f64;
  enum CBLAS_TRANSPOSE TA, TB;
  int64_t M, N, K, lda, ldb, block;
  const char *A, *B;
  char *C;
  size_t es;
} mm_rows;

static void rows_range(void *ctx, int64_t p0, int64_t p1) {
  const mm_rows *m = ctx;
  for (int64_t p = p0; p < p1; p++) {
    int64_t r0 = p * m->block, r1 = r0 + m->block < m->M ? r0 + m->block : m->M;
    if (r0 >= r1) continue;
    /* rows r0.. of op(A): A's rows, or its columns when transposed */
    const char *pa = m->A + (size_t)(m->TA == CblasTrans ? r0 : r0 * m->lda) * m->es;
    char *pc = m->C + (size_t)(r0 * m->N) * m->es;
    if (m->f64)
      cblas_dgemm(CblasRowMajor, m->TA, m->TB, (int)(r1 - r0), (int)m->N, (int)m->K, 1.0, (const double *)pa,
                  (int)m->lda, (const double *)m->B, (int)m->ldb, 0.0, (double *)pc, (int)m->N);
    else
      cblas_sgemm(CblasRowMajor, m->TA, m->TB, (int)(r1 - r0), (int)m->N, (int)m->K, 1.0f, (const float *)pa,
                  (int)m->lda, (const float *)m->B, (int)m->ldb, 0.0f, (float *)pc, (int)m->N);
  }
}

static int blas_on_pool = -1; /* $DFERC_BLAS_THREADS=openblas: OpenBLAS's own threads instead */

static void gemm_rows(int f64, enum CBLAS_TRANSPOSE TA, enum CBLAS_TRANSPOSE TB, int64_t M, int64_t N, int64_t K,
                      const void *A, int64_t lda, const void *B, int64_t ldb, void *C) {
  int threads = df_pool_threads();
  if (blas_on_pool < 0) {
    const char *e = getenv("DFERC_BLAS_THREADS");
    blas_on_pool = !(e && strcmp(e, "openblas") == 0);
  }
  if (threads > 1 && blas_on_pool && M >= 32 * threads) {
    int64_t parts = threads, block = (M + parts - 1) / parts;
    block = (block + 15) / 16 * 16;
    mm_rows m = {f64, TA, TB, M, N, K, lda, ldb, block, A, B, C, f64 ? 8u : 4u};
    openblas_set_num_threads(1);
    df_pool_run((M + block - 1) / block, rows_range, &m);
    openblas_set_num_threads(threads);
    return;
  }
  if (f64) cblas_dgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb, 0.0, C, (int)N);
  else cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)N);
}

/* C = op(A) op(B) over broadcast batches, through cblas (float32 or
** float64; the 16-bit floats go through float32 copies). */

static int run_matmul(const df_graph *g, const df_step *st, void **ptr, df_err *err) {
  const df_node *n = df_graph_node(g, st->node);
  void *A = ptr[st->slots[0]], *B = ptr[st->slots[1]], *C = ptr[st->slots[2]];
  if (n->dtype != DF_F16 && n->dtype != DF_BF16) {
    df_cpu_matmul_blas(g, n, A, B, C);
    return 0;
  }
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  size_t na = (size_t)df_shape_numel(a->ndim, a->shape), nb = (size_t)df_shape_numel(b->ndim, b->shape);
  size_t nc = (size_t)df_shape_numel(n->ndim, n->shape);
  float *fa = malloc((na + 1) * sizeof *fa), *fb = malloc((nb + 1) * sizeof *fb), *fc = malloc((nc + 1) * sizeof *fc);
  int rc = 0;
  if (!fa || !fb || !fc) {
    rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory for a %s product (%s:%d)", df_dtype_lname(n->dtype), n->file,
                    n->line);
  } else {
    df_dtype_convert(DF_F32, fa, a->dtype, A, na);
    df_dtype_convert(DF_F32, fb, b->dtype, B, nb);
    df_node wide = *n; /* the same product in float32 */
    wide.dtype = DF_F32;
    df_cpu_matmul_blas(g, &wide, fa, fb, fc);
    df_dtype_convert(n->dtype, C, DF_F32, fc, nc);
  }
  free(fa), free(fb), free(fc);
  return rc;
}

void df_cpu_matmul_blas(const df_graph *g, const df_node *n, void *A, void *B, void *C) {
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  int ta = n->attrs.ia[0] != 0, tb = n->attrs.ia[1] != 0;
  int nb = n->ndim - 2;
  int64_t M = n->shape[nb], N = n->shape[nb + 1], K = a->shape[a->ndim - 1 - ta];
  int64_t amat = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
  int64_t bmat = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
  int64_t batches = 1;
  for (int i = 0; i < nb; i++) batches *= n->shape[i];
  int f64 = n->dtype == DF_F64;
  enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  int lda = ta ? (int)M : (int)K, ldb = tb ? (int)K : (int)N;
  if (batches > 1 && b->ndim == 2 && !ta) {
    /* a weight shared by every batch: one product with M * batches rows */
    gemm_rows(f64, TA, TB, M * batches, N, K, A, lda, B, ldb, C);
    return;
  }
  int64_t sa[DF_MAX_DIMS], sb[DF_MAX_DIMS], idx[DF_MAX_DIMS] = {0}, oa = 0, ob = 0, s[DF_MAX_DIMS];
  /* broadcast strides of the batch dims, in matrices */
  for (int pass = 0; pass < 2; pass++) {
    const df_node *x = pass ? b : a;
    int xb = x->ndim - 2;
    int64_t stride = 1;
    for (int i = xb - 1; i >= 0; i--) {
      s[i] = stride;
      stride *= x->shape[i];
    }
    for (int i = 0; i < nb; i++) {
      int j = xb - nb + i;
      (pass ? sb : sa)[i] = (j >= 0 && x->shape[j] == n->shape[i]) ? s[j] : 0;
    }
  }
  size_t es = f64 ? 8 : 4;
  mm_batch mb = {f64, TA, TB, (int)M, (int)N, (int)K, lda, ldb, A, B, C, amat, bmat, es,
                 nb, n->shape, {0}, {0}};
  memcpy(mb.sa, sa, sizeof sa);
  memcpy(mb.sb, sb, sizeof sb);
  int threads = df_pool_threads();
  if (threads > 1 && batches >= threads && (double)M * (double)N * (double)K < (double)(1 << 22)) {
    /* many small products: one single-threaded product per pool thread
    ** beats OpenBLAS splitting each small one */
    openblas_set_num_threads(1);
    df_pool_run(batches, mm_range, &mb);
    openblas_set_num_threads(threads);
    return;
  }
  for (int64_t bi = 0; bi < batches; bi++) {
    char *pa = (char *)A + (size_t)(oa * amat) * es, *pb = (char *)B + (size_t)(ob * bmat) * es;
    char *pc = (char *)C + (size_t)(bi * M * N) * es;
    gemm_rows(f64, TA, TB, M, N, K, pa, lda, pb, ldb, pc);
    for (int d = nb - 1; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < n->shape[d]) break;
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
}

/* scatter_add in float32 (ops/index.c's semantics: out starts at zero,
** out[q', idx[q, m], s] += src[q, m, s], q' with the result's size-1
** leading dims pinned to 0); DF_EUNSUPPORTED for other dtypes. */
static double index_i64(const void *ix, int64_t r) { return (double)((const int64_t *)ix)[r]; }
static double index_i32(const void *ix, int64_t r) { return ((const int32_t *)ix)[r]; }

typedef struct add_f32 {
  float *y;
  const float *x;
} add_f32;

static void add_rows_f32(void *ctx, int64_t dst, int64_t src, int64_t S) {
  add_f32 *a = ctx;
  for (int64_t k = 0; k < S; k++) a->y[dst + k] += a->x[src + k];
}

static int scatter_add_f32(const df_graph *g, const df_node *n, void *const *in, void *out, df_err *err) {
  const df_node *ix = df_graph_node(g, n->inputs[0]), *src = df_graph_node(g, n->inputs[1]);
  if (n->dtype != DF_F32 || (ix->dtype != DF_I64 && ix->dtype != DF_I32)) return DF_EUNSUPPORTED;
  add_f32 a = {out, in[1]};
  memset(out, 0, (size_t)df_shape_numel(n->ndim, n->shape) * sizeof(float));
  df_err e = {0};
  if (df_scatter_add_walk(n, src, ix->dtype == DF_I64 ? index_i64 : index_i32, in[0], add_rows_f32, &a, &e))
    return df_err_set(err, e.code, "%s:%d: scatter_add: %s", n->file, n->line, e.msg);
  return 0;
}

/* A library op through its reference kernel, converting to float64. */
static int run_host_ref(const df_graph *g, const df_step *st, void **ptr, df_err *err) {
  const df_node *n = df_graph_node(g, st->node);
  const df_node *in[8];
  double *x[8] = {0};
  int rc = 0;
  for (int k = 0; k < n->ninputs && rc == 0; k++) {
    in[k] = df_graph_node(g, n->inputs[k]);
    int64_t m = df_shape_numel(in[k]->ndim, in[k]->shape);
    x[k] = malloc((size_t)(m ? m : 1) * sizeof(double));
    if (!x[k]) rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory");
    else df_dtype_convert(DF_F64, x[k], in[k]->dtype, ptr[st->slots[k]], (size_t)m);
  }
  int64_t m = df_shape_numel(n->ndim, n->shape);
  double *y = rc ? NULL : malloc((size_t)(m ? m : 1) * sizeof(double));
  if (!rc && !y) rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  if (!rc) {
    df_err e = {0};
    if (df_op_info(n->op)->ref(n, in, (const double *const *)x, y, &e))
      rc = df_err_set(err, e.code, "%s:%d: %s: %s", n->file, n->line, df_op_name(n->op), e.msg);
    else
      df_dtype_convert(n->dtype, ptr[st->slots[n->ninputs]], DF_F64, y, (size_t)m);
  }
  for (int k = 0; k < n->ninputs; k++) free(x[k]);
  free(y);
  return rc;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* How many times p occurs in the sorted array v[n]. */
static int count_ptr(void *const *v, int n, const void *p) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if ((uintptr_t)v[mid] < (uintptr_t)p) lo = mid + 1;
    else hi = mid;
  }
  int c = 0;
  while (lo + c < n && v[lo + c] == p) c++;
  return c;
}

static int cpu_run(df_plan *p, const df_binding *feeds, int n_feeds, df_tensor **outputs, df_err *err) {
  df_schedule *s = p->s;
  const df_graph *g = s->g;
  df_node_id *out_ids = malloc((size_t)(s->n_out + 1) * sizeof *out_ids);
  if (!out_ids) return df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  for (int i = 0; i < s->n_out; i++) out_ids[i] = s->slots[s->out_slots[i]].node;
  int bad = df_check_outputs(g, out_ids, s->n_out, outputs, err);
  free(out_ids);
  if (bad) return bad;
  if (!p->arena && s->arena_bytes) {
    p->arena = aligned_alloc(64, (s->arena_bytes + 63) & ~(size_t)63);
    if (!p->arena) return df_err_set(err, DF_ENOMEM, "cpu: cannot allocate the %zu-byte arena", s->arena_bytes);
  }
  df_tensor **given = calloc((size_t)s->n_out + 1, sizeof *given);
  if (!given) return df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  for (int i = 0; i < s->n_out; i++) given[i] = outputs[i];
  void **ptr = calloc((size_t)s->nslots + 1, sizeof *ptr);
  void **bufs = calloc((size_t)s->nslots + 1, sizeof *bufs);
  if (!ptr || !bufs) {
    free(ptr), free(bufs), free(given);
    return df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  }
  int rc = 0;
  for (int i = 0; i < s->nslots && rc == 0; i++) {
    df_slot *sl = &s->slots[i];
    if (sl->kind == DF_SLOT_UNUSED) continue;
    if (sl->kind == DF_SLOT_ARENA) ptr[i] = (char *)p->arena + sl->offset;
    else if (sl->kind == DF_SLOT_CONST) ptr[i] = sl->data;
    else {
      const df_tensor *t = df_find_feed(df_graph_node(g, sl->node), feeds, n_feeds, err);
      if (!t) rc = err && err->code ? err->code : DF_EINVAL;
      else ptr[i] = t->data; /* read in place: no copy */
      if (rc == 0 && p->check_finite) rc = df_check_finite_slot(s, i, ptr[i], err);
    }
  }
  /* outputs computed in place into a feed: directly when the caller gave
  ** that feed's tensor as the output (and no check may stop the run
  ** half-way), else into a copy of the feed, copied out at the end */
  void **copies = calloc((size_t)s->n_out + 1, sizeof *copies);
  void **fed = malloc((size_t)(s->nslots + 1) * sizeof *fed); /* the feeds' memory, sorted */
  int nfed = 0;
  if (!copies || !fed) rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  for (int i = 0; fed && i < s->nslots; i++)
    if (s->slots[i].kind == DF_SLOT_FEED) fed[nfed++] = ptr[i];
  if (fed) qsort(fed, (size_t)nfed, sizeof *fed, cmp_ptr);
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    if (!s->out_alias[i]) continue;
    int f = s->out_slots[i];
    /* directly only if no other feed is bound to the same memory */
    if (!p->check_finite && given[i] && given[i]->data == ptr[f] && count_ptr(fed, nfed, ptr[f]) == 1) continue;
    size_t nb = (size_t)s->slots[f].numel * df_dtype_size(s->slots[f].dtype);
    copies[i] = aligned_alloc(64, (nb + 63) & ~(size_t)63);
    if (!copies[i]) {
      rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory for %zu bytes", nb);
      break;
    }
    memcpy(copies[i], ptr[f], nb);
    ptr[f] = copies[i];
  }
  double *prof = df_profiling() ? calloc((size_t)s->nsteps + 1, sizeof *prof) : NULL;
  for (int i = 0; i < s->nsteps && rc == 0; i++) {
    df_step *st = &s->steps[i];
    struct timespec t0, t1;
    if (prof) clock_gettime(CLOCK_MONOTONIC, &t0);
    switch (st->kind) {
    case DF_STEP_KERNEL: {
      for (int b = 0; b < st->nslots; b++) bufs[b] = ptr[st->slots[b]];
      kctx k = {p->fns[i], bufs};
      df_pool_run_chunks(st->kernel->parallel_extent, p->chunks[i], run_range, &k);
      break;
    }
    case DF_STEP_MATMUL:
      if (p->gemm[i]) { /* generated: A, B, C (its panel is its own) */
        for (int b = 0; b < 3; b++) bufs[b] = ptr[st->slots[b]];
        kctx k = {p->fns[i], bufs};
        df_pool_run_chunks(p->gemm[i]->parallel_extent, p->chunks[i], run_range, &k);
      } else {
        rc = run_matmul(g, st, ptr, err);
      }
      break;
    case DF_STEP_LIB: {
      const df_node *n = df_graph_node(g, st->node);
      void *in[8];
      for (int k = 0; k < n->ninputs && k < 8; k++) in[k] = ptr[st->slots[k]];
      rc = df_cpu_attention(g, n, in, ptr[st->slots[n->ninputs]], err);
      if (rc == DF_EUNSUPPORTED) rc = df_cpu_recon_loss(g, n, in, ptr[st->slots[n->ninputs]], err);
      if (rc == DF_EUNSUPPORTED && n->op == DF_OP_SCATTER_ADD) rc = scatter_add_f32(g, n, in, ptr[st->slots[n->ninputs]], err);
      if (rc == DF_EUNSUPPORTED) rc = run_host_ref(g, st, ptr, err); /* the other library ops, float64 */
      break;
    }
    }
    for (int j = 0; j < st->nout && rc == 0 && p->check_finite; j++)
      rc = df_check_finite_slot(s, df_step_out_slot(st, j), ptr[df_step_out_slot(st, j)], err);
    if (prof) {
      clock_gettime(CLOCK_MONOTONIC, &t1);
      prof[i] = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    }
  }
  static const char *const kinds[3] = {"kernels", "matmul", "host library"};
  if (prof) df_profile_report(s, prof, "", kinds);
  free(prof);
  /* the caller's tensors are written last, and any output whose values
  ** sit in memory that one of them overwrites is first set aside */
  void **src = calloc((size_t)s->n_out + 1, sizeof *src), **dst = calloc((size_t)s->n_out + 1, sizeof *dst);
  void **saved = calloc((size_t)s->n_out + 1, sizeof *saved);
  int ndst = 0;
  if (rc == 0 && (!src || !dst || !saved)) rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory");
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    src[i] = ptr[s->out_slots[i]];
    if (given[i] && given[i]->data != src[i]) dst[ndst++] = given[i]->data;
  }
  if (rc == 0) qsort(dst, (size_t)ndst, sizeof *dst, cmp_ptr);
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    if (count_ptr(dst, ndst, src[i]) == 0) continue;
    size_t nb = (size_t)s->slots[s->out_slots[i]].numel * df_dtype_size(s->slots[s->out_slots[i]].dtype);
    if (!(saved[i] = malloc(nb + 1))) {
      rc = df_err_set(err, DF_ENOMEM, "cpu: out of memory for %zu bytes", nb);
      break;
    }
    memcpy(saved[i], src[i], nb);
    src[i] = saved[i];
  }
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < s->n_out && rc == 0; i++) {
      if ((pass == 0) == (given[i] != NULL)) continue;
      const df_slot *sl = &s->slots[s->out_slots[i]];
      const df_node *nd = df_graph_node(g, sl->node);
      if (!given[i]) outputs[i] = df_tensor_new(nd->dtype, nd->ndim, nd->shape, err);
      if (!outputs[i]) rc = DF_ENOMEM;
      else if (outputs[i]->data != src[i]) memcpy(outputs[i]->data, src[i], outputs[i]->nbytes);
    }
  for (int i = 0; saved && i < s->n_out; i++) free(saved[i]);
  free(saved), free(src), free(dst), free(fed);
  if (rc)
    for (int i = 0; i < s->n_out; i++) {
      if (!given[i]) df_tensor_unref(outputs[i]);
      outputs[i] = given[i];
    }
  for (int i = 0; copies && i < s->n_out; i++) free(copies[i]);
  free(copies);
  free(given);
  free(ptr);
  free(bufs);
  return rc;
}

static void *cpu_alloc(size_t nbytes, df_err *err) {
  void *p = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
  if (!p) df_err_set(err, DF_ENOMEM, "cpu: out of memory for %zu bytes", nbytes);
  return p;
}

static int cpu_copy(void *dst, const void *src, size_t nbytes, df_err *err) {
  memcpy(dst, src, nbytes);
  return 0;
}

const df_device df_device_cpu = {
    .name = "cpu",
    .description = "host CPU: fused kernels compiled by LLVM, OpenBLAS products, thread pool",
    .available = cpu_available,
    .supports_op = cpu_supports,
    .compile = cpu_compile,
    .run = cpu_run,
    .plan_stats = cpu_stats,
    .set_check_finite = cpu_set_check,
    .plan_free = cpu_plan_free,
    .buffer_alloc = cpu_alloc,
    .buffer_free = free,
    .copy_to_device = cpu_copy,
    .copy_to_host = cpu_copy,
};

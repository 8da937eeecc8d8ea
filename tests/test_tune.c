/*
** test_tune.c -- the Kernel IR interpreter (compiler/kir_interp.h) against
** the cpu code generator, and the autotuner (compiler/tune.h): kernels
** built by hand (elementwise, row reduction, softmax rows, layernorm
** rows, integer and bool arithmetic), compiled with several
** configurations and compared with the interpreter; a search that stores a
** winner per kernel, a second compile that loads the same winners without
** searching, and a deliberately wrong candidate that must be rejected.
*/
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "compiler/codegen_llvm.h"
#include "compiler/kir_interp.h"
#include "compiler/tune.h"
#include "tests/check.h"

#define R 37 /* rows: odd, not a multiple of any chunking */
#define C 53 /* columns: not a multiple of any vector width */

/* x[r, c] of an [R, C] buffer */
static kir_e at(kir_kernel *k, int buf, int r, int c) {
  return kir_load(k, buf, kir_iadd(k, kir_imul(k, kir_var(k, r), C), kir_var(k, c)));
}

/* out = gelu(x) * exp(-x) + tanh(x), elementwise over [R, C] */
static kir_kernel *k_elementwise(void) {
  kir_kernel *k = kir_new("test_gelu_exp_tanh_f32");
  int out = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_OUT), x = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_IN);
  int r = kir_for(k, R, KF_PARALLEL), c = kir_for(k, C, KF_VECTOR);
  kir_e v = at(k, x, r, c);
  kir_e half = kir_const_f(k, DF_F32, 0.5), one = kir_const_f(k, DF_F32, 1.0);
  kir_e g = kir_bin(k, DF_OP_MUL, kir_bin(k, DF_OP_MUL, v, half),
                    kir_bin(k, DF_OP_ADD, one, kir_un(k, DF_OP_ERF, kir_bin(k, DF_OP_MUL, v, kir_const_f(k, DF_F32, M_SQRT1_2)))));
  kir_e y = kir_bin(k, DF_OP_ADD, kir_bin(k, DF_OP_MUL, g, kir_un(k, DF_OP_EXP, kir_un(k, DF_OP_NEG, v))),
                    kir_un(k, DF_OP_TANH, v));
  kir_store(k, out, kir_iadd(k, kir_imul(k, kir_var(k, r), C), kir_var(k, c)), y);
  kir_end(k);
  kir_end(k);
  return k;
}

/* out[r] = sum_c x[r, c] * x[r, c] (a float32 accumulator) */
static kir_kernel *k_rowsum(void) {
  kir_kernel *k = kir_new("test_sum_sq_f32");
  int out = kir_add_buf(k, DF_F32, R, KB_GLOBAL, KB_OUT), x = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_IN);
  int r = kir_for(k, R, KF_PARALLEL);
  int t = kir_decl(k, DF_F32, kir_const_f(k, DF_F32, 0));
  int c = kir_for(k, C, KF_REDUCE);
  kir_e v = at(k, x, r, c);
  kir_acc(k, t, DF_OP_ADD, kir_bin(k, DF_OP_MUL, v, v));
  kir_end(k);
  kir_store(k, out, kir_var(k, r), kir_tmp(k, t, DF_F32));
  kir_end(k);
  return k;
}

/* softmax over each row: max, sum of exponentials, then a VECTOR loop */
static kir_kernel *k_softmax(void) {
  kir_kernel *k = kir_new("test_softmax_f32");
  int out = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_OUT), x = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_IN);
  int r = kir_for(k, R, KF_PARALLEL);
  int m = kir_decl(k, DF_F32, kir_const_f(k, DF_F32, -INFINITY));
  int c = kir_for(k, C, KF_REDUCE);
  kir_acc(k, m, DF_OP_MAX, at(k, x, r, c));
  kir_end(k);
  int s = kir_decl(k, DF_F32, kir_const_f(k, DF_F32, 0));
  c = kir_for(k, C, KF_REDUCE);
  kir_acc(k, s, DF_OP_ADD, kir_un(k, DF_OP_EXP, kir_bin(k, DF_OP_SUB, at(k, x, r, c), kir_tmp(k, m, DF_F32))));
  kir_end(k);
  c = kir_for(k, C, KF_VECTOR);
  kir_e e = kir_un(k, DF_OP_EXP, kir_bin(k, DF_OP_SUB, at(k, x, r, c), kir_tmp(k, m, DF_F32)));
  kir_store(k, out, kir_iadd(k, kir_imul(k, kir_var(k, r), C), kir_var(k, c)),
            kir_bin(k, DF_OP_DIV, e, kir_tmp(k, s, DF_F32)));
  kir_end(k);
  kir_end(k);
  return k;
}

/* layernorm over each row (float64 statistics, as the scheduler emits) */
static kir_kernel *k_layernorm(void) {
  kir_kernel *k = kir_new("test_layernorm_f32");
  int out = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_OUT), x = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_IN);
  int w = kir_add_buf(k, DF_F32, C, KB_GLOBAL, KB_IN), b = kir_add_buf(k, DF_F32, C, KB_GLOBAL, KB_IN);
  int r = kir_for(k, R, KF_PARALLEL);
  int t0 = kir_decl(k, DF_F64, kir_const_f(k, DF_F64, 0));
  int c = kir_for(k, C, KF_REDUCE);
  kir_acc(k, t0, DF_OP_ADD, kir_cast(k, DF_F64, at(k, x, r, c)));
  kir_end(k);
  int mean = kir_decl(k, DF_F64, kir_bin(k, DF_OP_DIV, kir_tmp(k, t0, DF_F64), kir_const_f(k, DF_F64, C)));
  int t2 = kir_decl(k, DF_F64, kir_const_f(k, DF_F64, 0));
  c = kir_for(k, C, KF_REDUCE);
  kir_e d = kir_bin(k, DF_OP_SUB, kir_cast(k, DF_F64, at(k, x, r, c)), kir_tmp(k, mean, DF_F64));
  kir_acc(k, t2, DF_OP_ADD, kir_bin(k, DF_OP_MUL, d, d));
  kir_end(k);
  int rs = kir_decl(k, DF_F64, kir_un(k, DF_OP_RSQRT, kir_bin(k, DF_OP_ADD, kir_bin(k, DF_OP_DIV, kir_tmp(k, t2, DF_F64),
                                                                                   kir_const_f(k, DF_F64, C)),
                                                             kir_const_f(k, DF_F64, 1e-6))));
  c = kir_for(k, C, KF_VECTOR);
  kir_e y = kir_bin(k, DF_OP_MUL,
                    kir_bin(k, DF_OP_SUB, kir_cast(k, DF_F64, at(k, x, r, c)), kir_tmp(k, mean, DF_F64)),
                    kir_tmp(k, rs, DF_F64));
  y = kir_bin(k, DF_OP_ADD, kir_bin(k, DF_OP_MUL, y, kir_cast(k, DF_F64, kir_load(k, w, kir_var(k, c)))),
              kir_cast(k, DF_F64, kir_load(k, b, kir_var(k, c))));
  kir_store(k, out, kir_iadd(k, kir_imul(k, kir_var(k, r), C), kir_var(k, c)), kir_cast(k, DF_F32, y));
  kir_end(k);
  kir_end(k);
  return k;
}

/* integers and bools: pos[i] = x[i] > 0, q[i] = (i * 7) / (n[i] - 1) (0 for a
** zero divisor), sel[i] = pos ? x : -x, through a gather with a clamped index */
static kir_kernel *k_integers(void) {
  kir_kernel *k = kir_new("test_int_bool_select");
  int pos = kir_add_buf(k, DF_BOOL, R * C, KB_GLOBAL, KB_OUT), q = kir_add_buf(k, DF_I64, R * C, KB_GLOBAL, KB_OUT);
  int sel = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_OUT);
  int x = kir_add_buf(k, DF_F32, R * C, KB_GLOBAL, KB_IN), n = kir_add_buf(k, DF_I64, R * C, KB_GLOBAL, KB_IN);
  int i = kir_for(k, (int64_t)R * C, KF_PARALLEL);
  kir_e iv = kir_var(k, i);
  kir_e xv = kir_load(k, x, iv);
  kir_e p = kir_bin(k, DF_OP_GT, xv, kir_const_f(k, DF_F32, 0));
  kir_store(k, pos, iv, p);
  kir_e den = kir_bin(k, DF_OP_SUB, kir_load(k, n, iv), kir_const_i(k, 1));
  kir_store(k, q, iv, kir_bin(k, DF_OP_DIV, kir_imul(k, iv, 7), den));
  kir_e j = kir_bin(k, DF_OP_MIN, kir_bin(k, DF_OP_MAX, kir_bin(k, DF_OP_ADD, iv, kir_load(k, n, iv)), kir_const_i(k, 0)),
                    kir_const_i(k, R * C - 1));
  kir_e g = kir_load(k, x, j);
  kir_store(k, sel, iv, kir_select(k, p, g, kir_un(k, DF_OP_NEG, g)));
  kir_end(k);
  return k;
}

typedef kir_kernel *(*maker)(void);
static const maker makers[] = {k_elementwise, k_rowsum, k_softmax, k_layernorm, k_integers};
#define NK ((int)(sizeof makers / sizeof *makers))

typedef struct bufs {
  int n;
  void *init[8], *ref[8], *out[8];
  size_t bytes[8];
} bufs;

static void bufs_make(const kir_kernel *k, bufs *b, unsigned seed) {
  memset(b, 0, sizeof *b);
  b->n = k->nbufs;
  srand(seed);
  for (int i = 0; i < k->nbufs; i++) {
    b->bytes[i] = (size_t)k->bufs[i].numel * df_dtype_size(k->bufs[i].dtype);
    b->init[i] = calloc(1, b->bytes[i]);
    b->ref[i] = malloc(b->bytes[i]);
    b->out[i] = malloc(b->bytes[i]);
    for (int64_t j = 0; j < k->bufs[i].numel; j++) {
      double v = df_dtype_is_float(k->bufs[i].dtype) ? 4.0 * rand() / RAND_MAX - 2.0 : (double)(rand() % 5);
      df_dtype_set(k->bufs[i].dtype, b->init[i], (size_t)j, v);
    }
    memcpy(b->ref[i], b->init[i], b->bytes[i]);
    memcpy(b->out[i], b->init[i], b->bytes[i]);
  }
}

static void bufs_free(bufs *b) {
  for (int i = 0; i < b->n; i++) free(b->init[i]), free(b->ref[i]), free(b->out[i]);
}

/* The largest error of the compiled outputs against the interpreter's,
** relative to 1e-4 * |ref| + 1e-5 * max|ref|: <= 1 agrees. */
static double worst(const kir_kernel *k, const bufs *b) {
  double w = 0;
  for (int i = 0; i < k->nbufs; i++) {
    if (!(k->bufs[i].role & KB_OUT)) continue;
    double scale = 0;
    for (int64_t j = 0; j < k->bufs[i].numel; j++)
      scale = fmax(scale, fabs(df_dtype_get(k->bufs[i].dtype, b->ref[i], (size_t)j)));
    for (int64_t j = 0; j < k->bufs[i].numel; j++) {
      double r = df_dtype_get(k->bufs[i].dtype, b->ref[i], (size_t)j);
      double o = df_dtype_get(k->bufs[i].dtype, b->out[i], (size_t)j);
      double e = fabs(o - r) / (1e-4 * fabs(r) + 1e-5 * scale + 1e-30);
      if (!(e <= w)) w = isnan(e) ? INFINITY : e;
    }
  }
  return w;
}

/* Compile all kernels with one configuration (NULL: as the tuner decides
** with `cache` and `mode`), run each on random inputs, compare with the
** interpreter.  Returns the number of kernels that disagree; fills
** configs (when given) with what each was compiled with. */
static int compare_all(const df_tune_config *force, df_cache *cache, int mode, df_llvm_stats *st,
                       df_tune_config *configs) {
  kir_kernel *ks[NK];
  for (int i = 0; i < NK; i++) ks[i] = makers[i]();
  df_llvm_options o = {0};
  o.cache = cache;
  o.tune = mode;
  o.force = force;
  df_err err = {0};
  df_llvm_jit *j = df_llvm_compile_with(ks, NK, &o, st, &err);
  CHECK(j != NULL);
  if (!j) printf("# %s\n", err.msg);
  int bad = 0;
  for (int i = 0; j && i < NK; i++) {
    bufs b;
    bufs_make(ks[i], &b, 1234u + (unsigned)i);
    df_err e = {0};
    int rc = kir_interp_run(ks[i], b.ref, &e);
    CHECK(rc == 0);
    df_kernel_fn fn = df_llvm_lookup(j, ks[i]);
    const df_tune_config *cfg = df_llvm_kernel_config(j, ks[i]);
    CHECK(fn != NULL && cfg != NULL);
    if (configs && cfg) configs[i] = *cfg;
    if (fn) fn(b.out, 0, ks[i]->parallel_extent);
    double w = worst(ks[i], &b);
    if (!(w <= 1)) {
      char cs[64];
      printf("# %s with %s: error %.3g of the tolerance\n", ks[i]->name, cfg ? df_tune_format(cfg, cs, sizeof cs) : "?", w);
      bad++;
    }
    bufs_free(&b);
  }
  df_llvm_free(j);
  for (int i = 0; i < NK; i++) kir_free(ks[i]);
  return bad;
}

static void test_interp_agrees_with_cpu(void) {
  df_err e = {0};
  if (!df_llvm_available(&e)) {
    printf("skip test_interp_agrees_with_cpu: %s\n", e.msg);
    check_group_failed = 0;
    return;
  }
  static const df_tune_config cfgs[] = {
      {512, 0, 0, 0, 0}, {256, 0, 0, 0, 0}, {512, 1, 1, 0, 0}, {512, 4, 0, 0, 0}, {256, 2, 4, 0, 0}, {512, 4, 4, 16, 0}};
  for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) CHECK(compare_all(&cfgs[c], NULL, DF_TUNE_DEFAULT, NULL, NULL) == 0);
}

static void test_interp_semantics(void) {
  /* integer division by zero is 0; a float-to-int cast truncates; NaN in MAX's first operand wins */
  kir_kernel *k = kir_new("test_semantics");
  int o = kir_add_buf(k, DF_I64, 3, KB_GLOBAL, KB_OUT), f = kir_add_buf(k, DF_F32, 2, KB_GLOBAL, KB_OUT);
  kir_for(k, 1, KF_PARALLEL);
  kir_store(k, o, kir_const_i(k, 0), kir_bin(k, DF_OP_DIV, kir_const_i(k, 7), kir_const_i(k, 0)));
  kir_store(k, o, kir_const_i(k, 1), kir_bin(k, DF_OP_DIV, kir_const_i(k, -7), kir_const_i(k, 2)));
  kir_store(k, o, kir_const_i(k, 2), kir_cast(k, DF_I64, kir_const_f(k, DF_F32, -2.75)));
  kir_store(k, f, kir_const_i(k, 0), kir_bin(k, DF_OP_MAX, kir_const_f(k, DF_F32, NAN), kir_const_f(k, DF_F32, 1)));
  /* a cast to bf16 rounds: 1.01 holds as 1.0078125 */
  kir_store(k, f, kir_const_i(k, 1), kir_cast(k, DF_F32, kir_cast(k, DF_BF16, kir_const_f(k, DF_F32, 1.01))));
  kir_end(k);
  int64_t ov[3] = {9, 9, 9};
  float fv[2] = {0, 0};
  void *b[2] = {ov, fv};
  df_err e = {0};
  CHECK(kir_interp_run(k, b, &e) == 0);
  CHECK(ov[0] == 0 && ov[1] == -3 && ov[2] == -2);
  CHECK(isnan(fv[0]));
  CHECK(fv[1] == 1.0078125f);
  kir_free(k);
  /* an index out of range is an error naming the kernel and the buffer */
  k = kir_new("test_out_of_range");
  o = kir_add_buf(k, DF_F32, 4, KB_GLOBAL, KB_OUT);
  int x = kir_add_buf(k, DF_F32, 4, KB_GLOBAL, KB_IN);
  int v = kir_for(k, 4, KF_PARALLEL);
  kir_store(k, o, kir_var(k, v), kir_load(k, x, kir_iadd(k, kir_var(k, v), kir_const_i(k, 1))));
  kir_end(k);
  float ob[4], xb[4] = {1, 2, 3, 4};
  void *b2[2] = {ob, xb};
  df_err e2 = {0};
  CHECK(kir_interp_run(k, b2, &e2) == DF_EINVAL);
  CHECK_CONTAINS(e2.msg, "test_out_of_range");
  CHECK_CONTAINS(e2.msg, "b1[4]");
  CHECK(ob[0] == 2 && ob[2] == 4);
  CHECK(kir_interp_work(k) == 4);
  kir_free(k);
}

static void test_config_text(void) {
  df_tune_config c = {256, 2, 4, 16, 0}, d;
  char s[64];
  CHECK(strcmp(df_tune_format(&c, s, sizeof s), "vw=256 il=2 ur=4 ch=16") == 0);
  CHECK(df_tune_parse(s, &d) == 0 && df_tune_equal(&c, &d));
  CHECK(df_tune_parse("ch=1", &d) == 0 && d.vector_width == 512 && d.chunks == 1);
  CHECK(df_tune_parse("vw=300", &d) < 0);
  CHECK(df_tune_parse("tile=64", &d) < 0);
  df_tune_default(NULL, &d);
  CHECK(strcmp(df_tune_format(&d, s, sizeof s), "vw=512 il=0 ur=0 ch=0") == 0);
}

static int count_winners(const df_cache_info *info, void *ud) {
  if (!strcmp(info->key.tuning, DF_TUNE_WINNER_KEY)) {
    df_tune_config c;
    int *n = ud;
    n[0]++;
    if (df_tune_parse(info->config, &c) == 0 && !c.wrong && strstr(info->times, "\"median_s\"")) n[1]++;
  }
  return 0;
}

static void test_search_stores_and_reloads(void) {
  df_err e = {0};
  if (!df_llvm_available(&e)) {
    printf("skip test_search_stores_and_reloads: %s\n", e.msg);
    return;
  }
  df_cache *c = df_cache_open(":memory:", DF_CACHE_QUIET, &e);
  CHECK(c != NULL);
  df_tune_counters before, after;
  df_tune_counters_get(&before);
  df_llvm_stats st;
  df_tune_config first[NK], second[NK];
  CHECK(compare_all(NULL, c, DF_TUNE_SEARCH, &st, first) == 0);
  df_tune_counters_get(&after);
  CHECK(st.searched == NK);
  CHECK(after.searched - before.searched == NK);
  CHECK(after.rejected == before.rejected);
  CHECK(after.candidates - before.candidates >= 3 * NK);
  int n[2] = {0, 0};
  CHECK(df_cache_list(c, count_winners, n, &e) == 0);
  CHECK(n[0] == NK && n[1] == NK);
  /* a second compile, not searching, loads the same winners */
  CHECK(compare_all(NULL, c, DF_TUNE_DEFAULT, &st, second) == 0);
  CHECK(st.tuned_from_cache == NK && st.hits == NK && st.misses == 0 && st.searched == 0);
  for (int i = 0; i < NK; i++) CHECK(df_tune_equal(&first[i], &second[i]));
  /* searching again keeps the stored winners */
  CHECK(compare_all(NULL, c, DF_TUNE_SEARCH, &st, second) == 0);
  CHECK(st.searched == 0 && st.tuned_from_cache == NK);
  df_cache_close(c);
}

static void test_wrong_candidate_rejected(void) {
  df_err e = {0};
  if (!df_llvm_available(&e)) {
    printf("skip test_wrong_candidate_rejected: %s\n", e.msg);
    return;
  }
  df_cache *c = df_cache_open(":memory:", DF_CACHE_QUIET, &e);
  df_tune_counters before, after;
  df_tune_counters_get(&before);
  df_tune_inject_wrong(1);
  df_llvm_stats st;
  df_tune_config cfg[NK];
  CHECK(compare_all(NULL, c, DF_TUNE_SEARCH, &st, cfg) == 0); /* the winners compute the right thing */
  df_tune_inject_wrong(0);
  df_tune_counters_get(&after);
  CHECK(st.searched == NK);
  /* one wrong candidate per kernel that has float outputs: all of them */
  CHECK(after.rejected - before.rejected == NK);
  for (int i = 0; i < NK; i++) CHECK(!cfg[i].wrong);
  int n[2] = {0, 0};
  CHECK(df_cache_list(c, count_winners, n, &e) == 0);
  CHECK(n[0] == NK && n[1] == NK);
  df_cache_close(c);
}

static void test_untunable_kernel(void) {
  df_err e = {0};
  if (!df_llvm_available(&e)) {
    printf("skip test_untunable_kernel: %s\n", e.msg);
    return;
  }
  /* reads past its input on every input: not searched, compiled with the default */
  kir_kernel *k = kir_new("test_reads_past_end");
  int o = kir_add_buf(k, DF_F32, 4, KB_GLOBAL, KB_OUT);
  int x = kir_add_buf(k, DF_F32, 4, KB_GLOBAL, KB_IN);
  int v = kir_for(k, 4, KF_PARALLEL);
  kir_store(k, o, kir_var(k, v), kir_load(k, x, kir_iadd(k, kir_var(k, v), kir_const_i(k, 100))));
  kir_end(k);
  df_tune_counters before, after;
  df_tune_counters_get(&before);
  df_llvm_options opt = {0};
  opt.tune = DF_TUNE_SEARCH;
  df_llvm_stats st;
  df_llvm_jit *j = df_llvm_compile_with(&k, 1, &opt, &st, &e);
  df_tune_counters_get(&after);
  CHECK(j != NULL);
  CHECK(st.searched == 0 && st.misses == 1);
  CHECK(after.untunable - before.untunable == 1);
  df_tune_config d;
  df_tune_default(k, &d);
  CHECK(j && df_tune_equal(df_llvm_kernel_config(j, k), &d));
  df_llvm_free(j);
  kir_free(k);
}

int main(void) {
  TEST(test_config_text);
  TEST(test_interp_semantics);
  TEST(test_interp_agrees_with_cpu);
  TEST(test_search_stores_and_reloads);
  TEST(test_wrong_candidate_rejected);
  TEST(test_untunable_kernel);
  return check_exit();
}

/*
** attention_cpu.c -- see attention_cpu.h.
**
** Forward, per (batch item, block of R query rows): S = scale Q K^T
** ([R, M]), each row turned into its softmax in place, O = S V.
** Backward, per batch item (its query blocks in order, since dK and dV add
** up over them): P recomputed as in the forward, dV += P^T dO,
** dP = dO V^T, dS = P (dP - D) scale with D_i = sum_j P_ij dP_ij,
** dQ = dS K, dK += dS^T Q.
** The row loops are compiled for the host's vector units (target clones:
** AVX-512, AVX2 + FMA, baseline); exp is the polynomial of
** compiler/llvm_math.c written in C.
*/
#include "config.h"

#include "runtime/attention_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/pool.h"
#include "runtime/tensor.h"

extern void openblas_set_num_threads(int);

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DF_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
#else
#define DF_CLONES
#endif

enum { ROWS = 64, LANES = 16 };

/* exp for float32 within ~1 ulp: Cody-Waite reduction, the Cephes expf
** polynomial, 2^n as two normal factors (see compiler/llvm_math.c) */
static inline float fexp(float x) {
  float xc = x > -104.0f ? x : -104.0f; /* NaN too: put back at the end */
  xc = xc < 89.0f ? xc : 89.0f;
  float n = __builtin_rintf(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  int32_t ni = (int32_t)n, h = ni >> 1;
  uint32_t b1 = (uint32_t)(h + 127) << 23, b2 = (uint32_t)(ni - h + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  float res = y * s1 * s2;
  return x != x ? x : res;
}

/* Each of the R rows of p[R, M] (scores) becomes its softmax. */
DF_CLONES static void softmax_rows(float *p, int64_t R, int64_t M) {
  for (int64_t i = 0; i < R; i++) {
    float *row = p + i * M;
    float lm[LANES], ls[LANES];
    for (int l = 0; l < LANES; l++) lm[l] = -INFINITY, ls[l] = 0.0f;
    int64_t j = 0;
    for (; j + LANES <= M; j += LANES)
      for (int l = 0; l < LANES; l++) lm[l] = row[j + l] > lm[l] ? row[j + l] : lm[l];
    float mx = -INFINITY;
    for (; j < M; j++) mx = row[j] > mx ? row[j] : mx;
    for (int l = 0; l < LANES; l++) mx = lm[l] > mx ? lm[l] : mx;
    double s = 0.0;
    for (j = 0; j + LANES <= M; j += LANES)
      for (int l = 0; l < LANES; l++) {
        float e = fexp(row[j + l] - mx);
        row[j + l] = e;
        ls[l] += e;
      }
    for (; j < M; j++) s += (row[j] = fexp(row[j] - mx));
    for (int l = 0; l < LANES; l++) s += ls[l];
    float inv = (float)(1.0 / s);
    for (j = 0; j < M; j++) row[j] *= inv;
  }
}

/* dp[i, j] = p[i, j] (dp[i, j] - D_i) scale, D_i = sum_j p[i, j] dp[i, j]
** (= dO_i . O_i, but from the recomputed P: a sharp softmax would leave
** a cancellation error of the forward's rounding otherwise) */
DF_CLONES static void softmax_grad_rows(float *dp, const float *p, int64_t R, int64_t M, float scale) {
  for (int64_t i = 0; i < R; i++) {
    float *row = dp + i * M;
    const float *pr = p + i * M;
    float ls[LANES];
    for (int l = 0; l < LANES; l++) ls[l] = 0.0f;
    double D = 0.0;
    int64_t j = 0;
    for (; j + LANES <= M; j += LANES)
      for (int l = 0; l < LANES; l++) ls[l] += pr[j + l] * row[j + l];
    for (; j < M; j++) D += (double)pr[j] * row[j];
    for (int l = 0; l < LANES; l++) D += ls[l];
    float Df = (float)D;
    for (j = 0; j < M; j++) row[j] = pr[j] * (row[j] - Df) * scale;
  }
}

typedef struct att {
  int64_t nb, N, M, d, blocks;
  float scale;
  const float *q, *k, *v, *o, *go;
  float *out;
  _Atomic int failed; /* a pool task could not get its blocks */
} att;

static void fwd_range(void *ctx, int64_t t0, int64_t t1) {
  att *a = ctx;
  float *s = malloc((size_t)ROWS * (size_t)a->M * sizeof *s + 1);
  if (!s) {
    a->failed = 1;
    return;
  }
  for (int64_t t = t0; t < t1; t++) {
    int64_t b = t / a->blocks, i0 = (t % a->blocks) * ROWS;
    int64_t R = a->N - i0 < ROWS ? a->N - i0 : ROWS;
    const float *q = a->q + (b * a->N + i0) * a->d, *k = a->k + b * a->M * a->d, *v = a->v + b * a->M * a->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)a->M, (int)a->d, a->scale, q, (int)a->d, k,
                (int)a->d, 0.0f, s, (int)a->M);
    softmax_rows(s, R, a->M);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)a->d, (int)a->M, 1.0f, s, (int)a->M, v,
                (int)a->d, 0.0f, a->out + (b * a->N + i0) * a->d, (int)a->d);
  }
  free(s);
}

static void bwd_range(void *ctx, int64_t b0, int64_t b1) {
  att *a = ctx;
  int64_t N = a->N, M = a->M, d = a->d;
  float *p = malloc(2 * (size_t)ROWS * (size_t)M * sizeof *p + 1), *dp = p ? p + (size_t)ROWS * M : NULL;
  if (!p) {
    a->failed = 1;
    return;
  }
  for (int64_t b = b0; b < b1; b++) {
    const float *q = a->q + b * N * d, *k = a->k + b * M * d, *v = a->v + b * M * d;
    const float *go = a->go + b * N * d;
    float *dq = a->out + b * (N + 2 * M) * d, *dk = dq + N * d, *dv = dk + M * d;
    memset(dk, 0, 2 * (size_t)M * (size_t)d * sizeof *dk);
    for (int64_t i0 = 0; i0 < N; i0 += ROWS) {
      int R = (int)(N - i0 < ROWS ? N - i0 : ROWS);
      const float *qb = q + i0 * d, *gb = go + i0 * d;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, (int)M, (int)d, a->scale, qb, (int)d, k, (int)d, 0.0f,
                  p, (int)M);
      softmax_rows(p, R, M);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)d, R, 1.0f, p, (int)M, gb, (int)d, 1.0f, dv,
                  (int)d);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, (int)M, (int)d, 1.0f, gb, (int)d, v, (int)d, 0.0f, dp,
                  (int)M);
      softmax_grad_rows(dp, p, R, M, a->scale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, (int)d, (int)M, 1.0f, dp, (int)M, k, (int)d, 0.0f,
                  dq + i0 * d, (int)d);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)d, R, 1.0f, dp, (int)M, qb, (int)d, 1.0f, dk,
                  (int)d);
    }
  }
  free(p);
}

int df_cpu_attention(const df_graph *g, const df_node *n, void *const *in, void *out, df_err *err) {
  if ((n->op != DF_OP_ATTENTION && n->op != DF_OP_ATTENTION_GRAD) || n->dtype != DF_F32) return DF_EUNSUPPORTED;
  const df_node *qn = df_graph_node(g, n->inputs[0]), *kn = df_graph_node(g, n->inputs[1]);
  att a;
  memset(&a, 0, sizeof a);
  int nd = qn->ndim;
  a.nb = 1;
  for (int i = 0; i < nd - 2; i++) a.nb *= qn->shape[i];
  a.N = qn->shape[nd - 2];
  a.M = kn->shape[nd - 2];
  a.d = qn->shape[nd - 1];
  a.scale = (float)n->attrs.fa[0];
  a.q = in[0], a.k = in[1], a.v = in[2];
  a.out = out;
  if (a.N == 0 || a.M == 0 || a.d == 0 || a.nb == 0) { /* no queries or keys: zeros (dk, dv too) */
    memset(out, 0, (size_t)df_shape_numel(n->ndim, n->shape) * sizeof(float));
    return 0;
  }
  int threads = df_pool_threads();
  if (threads > 1) openblas_set_num_threads(1);
  if (n->op == DF_OP_ATTENTION) {
    a.blocks = (a.N + ROWS - 1) / ROWS;
    df_pool_run(a.nb * a.blocks, fwd_range, &a);
  } else {
    a.o = in[3], a.go = in[4];
    df_pool_run(a.nb, bwd_range, &a);
  }
  if (threads > 1) openblas_set_num_threads(threads);
  if (a.failed) return df_err_set(err, DF_ENOMEM, "cpu: out of memory for attention blocks (%s:%d)", n->file, n->line);
  return 0;
}

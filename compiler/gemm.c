/*
** gemm.c -- see gemm.h.
*/
#include "compiler/gemm.h"

#include "runtime/tensor.h" /* df_shape_numel, as schedule.c */

#include <stdio.h>

const df_gemm_params df_gemm_default = {12, 32, 256, 1024, 192, 0, 2, 1};

/* An i64 expression: a / c and a % c for a constant c > 0. */
static kir_e idiv(kir_kernel *k, kir_e a, int64_t c) {
  return c == 1 ? a : kir_bin(k, DF_OP_DIV, a, kir_const_i(k, c));
}
static kir_e imod(kir_kernel *k, kir_e a, int64_t c) {
  if (c == 1) return kir_const_i(k, 0);
  return kir_bin(k, DF_OP_SUB, a, kir_imul(k, idiv(k, a, c), c));
}

/* A packing index i that may run past `limit` (pad): clamped to limit - 1,
** so that its load stays in range, with i < limit ANDed into *inside (-1:
** no guard yet).  Unchanged without padding. */
static kir_e padded(kir_kernel *k, kir_e i, int64_t limit, int pad, kir_e *inside) {
  if (!pad) return i;
  kir_e lt = kir_bin(k, DF_OP_LT, i, kir_const_i(k, limit));
  *inside = *inside < 0 ? lt : kir_bin(k, DF_OP_MUL, kir_cast(k, DF_I64, *inside), kir_cast(k, DF_I64, lt));
  return kir_bin(k, DF_OP_MIN, i, kir_const_i(k, limit - 1));
}

/* buf[idx], or 0 where the guard (if any) is false. */
static kir_e guarded_load(kir_kernel *k, int buf, kir_e idx, kir_e inside) {
  kir_e v = kir_load(k, buf, idx);
  return inside < 0 ? v : kir_select(k, inside, v, kir_const_f(k, DF_F32, 0.0));
}

typedef struct gemm {
  kir_kernel *k;
  int ta, tb;
  int64_t M, N, K, nc, mc, nj;
  int mr, nr, bf16, direct_a;
  kir_e abase, bbase, cbase, n0; /* offsets of this parallel item's matrices; its first column */
} gemm;

/* The tiles of rows [r0, r0 + rows) against the packed B panel, column
** block by column block (a B micro-panel stays in L1 while the row groups
** pass): row group g's A starts at a0 + g * a_group, row i of it at + i *
** a_m, step p at + p * a_k; `steps` steps of `w` elements (w 2: bf16
** pairs). */
typedef struct a_operand {
  int buf;
  kir_e a0;
  int64_t a_group, a_m, a_k, steps, w;
} a_operand;

static void tiles(gemm *G, const a_operand *o, kir_e acc, kir_e r0, int64_t rows) {
  kir_kernel *k = G->k;
  const int C = 2, P = 3;
  int64_t mr = G->mr, nblk = G->nc / G->nr, full = rows / mr, rest = rows % mr;
  int j = kir_for(k, nblk, 0);
  kir_e c0 = kir_iadd(k, G->n0, kir_imul(k, kir_var(k, j), G->nr));
  for (int part = 0; part < 2; part++) {
    int64_t m = part ? rest : mr, count = part ? 1 : full;
    if (m == 0 || count == 0) continue;
    kir_e g = part ? kir_const_i(k, full) : kir_var(k, kir_for(k, count, 0));
    kir_tile t = {o->buf, P, C, 0, 0, 0, 0, 0, m, G->nr, o->steps, o->a_m, o->a_k, G->nr * o->w, G->N,
                  o->w == 2 ? KT_BF16_PAIRS : KT_F32};
    t.a = kir_iadd(k, o->a0, kir_imul(k, g, o->a_group));
    t.b = kir_imul(k, kir_var(k, j), o->steps * G->nr * o->w);
    t.c = kir_iadd(k, G->cbase, kir_iadd(k, kir_imul(k, kir_iadd(k, r0, kir_imul(k, g, mr)), G->N), c0));
    t.acc = acc;
    t.n_valid = kir_bin(k, DF_OP_SUB, kir_const_i(k, G->N), c0);
    kir_tile_dot(k, &t);
    if (!part) kir_end(k);
  }
  kir_end(k);
}

/* Rows [r0, r0 + rows) of M (rows a constant) against the packed B
** panel: float32 A where it lies, or packed (MR rows interleaved, zero
** past M), then the tiles. */
static void row_block(gemm *G, kir_e k0, int64_t depth, kir_e acc, kir_e r0, int64_t rows) {
  kir_kernel *k = G->k;
  const int A = 0, Q = 4;
  int64_t mr = G->mr, groups = (rows + mr - 1) / mr;
  /* pack: apanel[(ir * depth + kk) * mr + ii] = A[r0 + ir * mr + ii, k0 + kk]; the
  ** innermost loops run along A's memory: for ir, ii, kk (k inner), or when
  ** A is transposed for kk, ir, ii (each row of A^T read once, whole) */
  /* bf16: the depth in pairs, each row's pair adjacent (zero past the block) */
  int64_t steps = G->bf16 ? (depth + 1) / 2 : depth, w = G->bf16 ? 2 : 1;
  if (G->direct_a && !G->bf16) {
    /* A read where it lies: row i, depth p at abase + (r0 + i) * a_m + (k0 + p) * a_k */
    int64_t a_m = G->ta ? 1 : G->K, a_k = G->ta ? G->M : 1;
    a_operand o = {A, kir_iadd(k, G->abase, kir_iadd(k, kir_imul(k, r0, a_m), kir_imul(k, k0, a_k))), mr * a_m, a_m,
                   a_k, depth, 1};
    tiles(G, &o, acc, r0, rows);
    return;
  }
  int ir, ii, kk;
  if (G->ta) {
    kk = kir_for(k, steps * w, 0);
    ir = kir_for(k, groups, 0);
    ii = kir_for(k, mr, G->bf16 ? KF_SCALAR : 0); /* bf16: strided stores, scalar */
  } else {
    ir = kir_for(k, groups, 0);
    ii = kir_for(k, mr, 0);
    kk = kir_for(k, steps * w, KF_SCALAR); /* stores strided by mr: scalar */
  }
  kir_e local = kir_iadd(k, kir_imul(k, kir_var(k, ir), mr), kir_var(k, ii));
  /* guards only where the block has padding: rows past M (a block with
  ** partial row groups ends at M), depths past the block */
  kir_e inside = -1;
  kir_e row = padded(k, kir_iadd(k, r0, local), G->M, rows % mr != 0, &inside);
  kir_e kx = kir_iadd(k, k0, padded(k, kir_var(k, kk), depth, steps * w > depth, &inside));
  kir_e ai = G->ta ? kir_iadd(k, kir_imul(k, kx, G->M), row) : kir_iadd(k, kir_imul(k, row, G->K), kx);
  kir_e val = guarded_load(k, A, kir_iadd(k, G->abase, ai), inside);
  kir_e step = G->bf16 ? idiv(k, kir_var(k, kk), 2) : kir_var(k, kk);
  kir_e qi = kir_iadd(k, kir_imul(k, kir_iadd(k, kir_imul(k, kir_var(k, ir), steps), step), mr), kir_var(k, ii));
  if (G->bf16) qi = kir_iadd(k, kir_imul(k, qi, 2), imod(k, kir_var(k, kk), 2));
  kir_store(k, Q, qi, val);
  kir_end(k);
  kir_end(k);
  kir_end(k);
  a_operand o = {Q, kir_const_i(k, 0), steps * mr * w, w, mr * w, steps, w};
  tiles(G, &o, acc, r0, rows);
}

/* One depth block: `depth` steps of K from k0 (an i64 expression);
** accumulate into C unless this is the first block (acc). */
static void depth_block(gemm *G, kir_e k0, int64_t depth, kir_e acc) {
  kir_kernel *k = G->k;
  const int B = 1, P = 3;
  int64_t nblk = G->nc / G->nr;
  /* pack: panel[(jr * depth + kk) * nr + jj] = B[k0 + kk, n0 + jr * nr + jj] (0 past N) */
  int64_t steps = G->bf16 ? (depth + 1) / 2 : depth, w = G->bf16 ? 2 : 1;
  int jr = kir_for(k, nblk, 0);
  int o1 = kir_for(k, G->tb ? G->nr : steps * w, 0); /* the innermost loop runs along B's memory */
  int o2 = kir_for(k, G->tb ? steps * w : G->nr, G->tb ? KF_SCALAR : 0);
  int kk = G->tb ? o2 : o1, jj = G->tb ? o1 : o2;
  kir_e col = kir_iadd(k, G->n0, kir_iadd(k, kir_imul(k, kir_var(k, jr), G->nr), kir_var(k, jj)));
  /* guards only where there is padding: columns past N, depths past the block */
  kir_e inside = -1;
  kir_e colc = padded(k, col, G->N, G->nj * G->nc != G->N, &inside);
  kir_e row = kir_iadd(k, k0, padded(k, kir_var(k, kk), depth, steps * w > depth, &inside));
  kir_e bi = G->tb ? kir_iadd(k, kir_imul(k, colc, G->K), row) : kir_iadd(k, kir_imul(k, row, G->N), colc);
  kir_e val = guarded_load(k, B, kir_iadd(k, G->bbase, bi), inside);
  kir_e step = G->bf16 ? idiv(k, kir_var(k, kk), 2) : kir_var(k, kk);
  kir_e pi = kir_iadd(k, kir_imul(k, kir_iadd(k, kir_imul(k, kir_var(k, jr), steps), step), G->nr), kir_var(k, jj));
  if (G->bf16) pi = kir_iadd(k, kir_imul(k, pi, 2), imod(k, kir_var(k, kk), 2));
  kir_store(k, P, pi, val);
  kir_end(k);
  kir_end(k);
  kir_end(k);
  /* blocks of mc rows (A's packed block stays in L2), then the rest */
  int64_t full = G->M / G->mc, rest = G->M % G->mc;
  if (full > 0) {
    int ib = kir_for(k, full, 0);
    row_block(G, k0, depth, acc, kir_imul(k, kir_var(k, ib), G->mc), G->mc);
    kir_end(k);
  }
  if (rest > 0) row_block(G, k0, depth, acc, kir_const_i(k, full * G->mc), rest);
}

kir_kernel *df_gemm_kernel(const df_graph *g, const df_node *n, const df_gemm_params *prm, df_err *err) {
  if (!prm) prm = &df_gemm_default;
  if (n->op != DF_OP_MATMUL || n->dtype != DF_F32) {
    df_err_set(err, DF_EUNSUPPORTED, "gemm: %s:%d: only float32 products are generated", n->file, n->line);
    return NULL;
  }
  if (prm->mr < 1 || prm->mr > 16 || prm->nr % 16 || prm->nr < 16 || prm->nr > 48 || prm->kc < 1 ||
      prm->nc_max < prm->nr || prm->mc < prm->mr) {
    df_err_set(err, DF_EINVAL, "gemm: bad tile sizes %dx%d kc %d nc %d mc %d", prm->mr, prm->nr, prm->kc, prm->nc_max,
               prm->mc);
    return NULL;
  }
  if (((int64_t)prm->kc * prm->nc_max + (int64_t)prm->kc * prm->mc) * 4 > DF_GEMM_MAX_SCRATCH) {
    df_err_set(err, DF_EINVAL, "gemm: tile sizes kc %d nc %d mc %d need more than %d MB of panels", prm->kc,
               prm->nc_max, prm->mc, DF_GEMM_MAX_SCRATCH >> 20);
    return NULL;
  }
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  gemm G = {0};
  G.ta = n->attrs.ia[0] != 0;
  G.tb = n->attrs.ia[1] != 0;
  int nb = n->ndim - 2;
  G.M = n->shape[nb];
  G.N = n->shape[nb + 1];
  G.K = a->shape[a->ndim - 1 - G.ta];
  G.mr = prm->mr;
  G.bf16 = prm->bf16;
  G.direct_a = prm->direct_a;
  int64_t mc_round = prm->mc / prm->mr * prm->mr;
  G.nr = prm->nr;
  int64_t batches = 1;
  for (int i = 0; i < nb; i++) batches *= n->shape[i];
  int64_t amat = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
  int64_t bmat = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
  int fold = batches > 1 && b->ndim == 2 && !G.ta; /* a weight shared by every batch: one product */
  if (fold) {
    G.M *= batches;
    batches = 1;
  }
  /* blocks of columns: enough for the threads, each at most nc_max wide */
  int64_t tiles = (G.N + G.nr - 1) / G.nr;
  if (tiles < 1) tiles = 1; /* N = 0: one block of masked columns */
  int64_t nj = (tiles * G.nr + prm->nc_max - 1) / prm->nc_max;
  int64_t par = prm->par > 1 ? prm->par : 1; /* a block per thread at least, where there are columns */
  if (batches * nj < par) nj = (par + batches - 1) / batches;
  if (nj > tiles) nj = tiles;
  if (nj < 1) nj = 1;
  G.nc = (tiles + nj - 1) / nj * G.nr;
  nj = (tiles * G.nr + G.nc - 1) / G.nc;
  G.nj = nj;
  char name[96];
  snprintf(name, sizeof name, "gemm_%s%s_%lldx%lldx%lld_%s", G.ta ? "t" : "n", G.tb ? "t" : "n", (long long)G.M,
           (long long)G.N, (long long)G.K, G.bf16 ? "bf16dot" : "f32");
  kir_kernel *k = G.k = kir_new(name);
  if (!k) {
    df_err_set(err, DF_ENOMEM, "gemm: out of memory");
    return NULL;
  }
  int64_t kc = prm->kc < G.K ? prm->kc : G.K;
  kir_add_buf(k, DF_F32, df_shape_numel(a->ndim, a->shape), KB_GLOBAL, KB_IN);
  kir_add_buf(k, DF_F32, df_shape_numel(b->ndim, b->shape), KB_GLOBAL, KB_IN);
  kir_add_buf(k, DF_F32, df_shape_numel(n->ndim, n->shape), KB_GLOBAL, KB_OUT);
  df_dtype pt = G.bf16 ? DF_BF16 : DF_F32;
  int64_t kcp = kc > 0 ? (G.bf16 ? (kc + 1) / 2 * 2 : kc) : 1;
  kir_add_buf(k, pt, kcp * G.nc, KB_SCRATCH, 0);
  G.mc = G.M < mc_round ? (G.M > 0 ? G.M : 1) : mc_round;
  if (!G.direct_a || G.bf16) kir_add_buf(k, pt, kcp * ((G.mc + G.mr - 1) / G.mr * G.mr), KB_SCRATCH, 0);
  if (G.M == 0 || G.N == 0 || batches == 0) { /* an empty C: nothing to compute */
    kir_for(k, 1, KF_PARALLEL);
    kir_end(k);
    return k;
  }
  int t = kir_for(k, batches * nj, KF_PARALLEL);
  kir_e item = kir_var(k, t);
  kir_e bt = idiv(k, item, nj), jc = imod(k, item, nj);
  G.n0 = kir_imul(k, jc, G.nc);
  /* each operand's matrix for batch bt: its batch dims broadcast against the output's */
  G.cbase = kir_imul(k, bt, G.M * G.N);
  G.abase = G.bbase = kir_const_i(k, 0);
  if (!fold && batches > 1) {
    for (int pass = 0; pass < 2; pass++) {
      const df_node *x = pass ? b : a;
      int xb = x->ndim - 2;
      int64_t stride = 1, inner = 1;
      kir_e off = kir_const_i(k, 0);
      for (int i = nb - 1; i >= 0; i--) {
        int j = xb - nb + i;
        if (j >= 0 && x->shape[j] == n->shape[i] && n->shape[i] > 1)
          off = kir_iadd(k, off, kir_imul(k, imod(k, idiv(k, bt, inner), n->shape[i]), stride));
        if (j >= 0) stride *= x->shape[j];
        inner *= n->shape[i];
      }
      off = kir_imul(k, off, pass ? bmat : amat);
      if (pass) G.bbase = off;
      else G.abase = off;
    }
  }
  int64_t nkfull = kc > 0 ? G.K / kc : 0, krest = kc > 0 ? G.K % kc : 0;
  if (G.K == 0) {
    depth_block(&G, kir_const_i(k, 0), 0, kir_bin(k, DF_OP_NE, kir_const_i(k, 0), kir_const_i(k, 0)));
  } else {
    if (nkfull > 0) {
      int kb = kir_for(k, nkfull, 0);
      kir_e k0 = kir_imul(k, kir_var(k, kb), kc);
      depth_block(&G, k0, kc, kir_bin(k, DF_OP_GT, kir_var(k, kb), kir_const_i(k, 0)));
      kir_end(k);
    }
    if (krest > 0)
      depth_block(&G, kir_const_i(k, nkfull * kc), krest,
                  kir_bin(k, DF_OP_GT, kir_const_i(k, nkfull), kir_const_i(k, 0)));
  }
  kir_end(k);
  if (kir_verify(k, err)) {
    kir_free(k);
    return NULL;
  }
  return k;
}

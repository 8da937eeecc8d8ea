/*
** kir.c -- see kir.h.
*/
#include "compiler/kir.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

kir_kernel *kir_new(const char *name) {
  kir_kernel *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  snprintf(k->name, sizeof k->name, "%s", name);
  k->parallel_extent = 1;
  return k;
}

int kir_add_buf(kir_kernel *k, df_dtype dt, int64_t numel, int scope, int role) {
  if (k->failed) return -1;
  if (k->nbufs == k->cap_bufs) {
    int cap = k->cap_bufs ? k->cap_bufs * 2 : 8;
    kir_buf *n = realloc(k->bufs, (size_t)cap * sizeof *n);
    if (!n) {
      k->failed = 1;
      return -1;
    }
    k->bufs = n;
    k->cap_bufs = cap;
  }
  kir_buf b = {dt, numel, scope, role};
  k->bufs[k->nbufs] = b;
  return k->nbufs++;
}

void kir_merge_buf(kir_kernel *k, int from, int into) {
  if (from == into || from < 0 || from >= k->nbufs || into < 0 || into >= k->nbufs) return;
  k->bufs[into].role |= k->bufs[from].role;
  int dst = into > from ? into - 1 : into;
#define REMAP(b) ((b) == from ? dst : (b) > from ? (b) - 1 : (b))
  for (int i = 0; i < k->nexprs; i++)
    if (k->exprs[i].kind == KE_LOAD) k->exprs[i].a = REMAP(k->exprs[i].a);
  for (int i = 0; i < k->nstmts; i++)
    if (k->stmts[i].kind == KS_STORE) k->stmts[i].buf = REMAP(k->stmts[i].buf);
  for (int i = 0; i < k->ntiles; i++) {
    kir_tile *t = &k->tiles[i];
    t->a_buf = REMAP(t->a_buf), t->b_buf = REMAP(t->b_buf), t->c_buf = REMAP(t->c_buf);
  }
#undef REMAP
  memmove(&k->bufs[from], &k->bufs[from + 1], (size_t)(k->nbufs - from - 1) * sizeof *k->bufs);
  k->nbufs--;
}

void kir_free(kir_kernel *k) {
  if (!k) return;
  free(k->bufs);
  free(k->exprs);
  free(k->stmts);
  free(k->tiles);
  free(k);
}

static kir_e push_expr(kir_kernel *k, kir_expr e) {
  if (k->failed) return -1;
  if (k->nexprs == k->cap_exprs) {
    int cap = k->cap_exprs ? k->cap_exprs * 2 : 64;
    kir_expr *n = realloc(k->exprs, (size_t)cap * sizeof *n);
    if (!n) {
      k->failed = 1;
      return -1;
    }
    k->exprs = n;
    k->cap_exprs = cap;
  }
  k->exprs[k->nexprs] = e;
  return k->nexprs++;
}

static void push_stmt(kir_kernel *k, kir_stmt s) {
  if (k->failed) return;
  if (k->nstmts == k->cap_stmts) {
    int cap = k->cap_stmts ? k->cap_stmts * 2 : 32;
    kir_stmt *n = realloc(k->stmts, (size_t)cap * sizeof *n);
    if (!n) {
      k->failed = 1;
      return;
    }
    k->stmts = n;
    k->cap_stmts = cap;
  }
  k->stmts[k->nstmts++] = s;
}

static int bad(kir_kernel *k, kir_e a) {
  if (a < 0 || a >= k->nexprs) {
    k->failed = 1;
    return 1;
  }
  return 0;
}

kir_e kir_const_f(kir_kernel *k, df_dtype dt, double v) {
  kir_expr e = {KE_CONST, dt, 0, -1, -1, -1, v, (int64_t)v};
  return push_expr(k, e);
}

kir_e kir_const_i(kir_kernel *k, int64_t v) {
  kir_expr e = {KE_CONST, DF_I64, 0, -1, -1, -1, (double)v, v};
  return push_expr(k, e);
}

kir_e kir_var(kir_kernel *k, int var) {
  kir_expr e = {KE_VAR, DF_I64, 0, var, -1, -1, 0, 0};
  return push_expr(k, e);
}

kir_e kir_tmp(kir_kernel *k, int tmp, df_dtype dt) {
  kir_expr e = {KE_TMP, dt, 0, tmp, -1, -1, 0, 0};
  return push_expr(k, e);
}

kir_e kir_load(kir_kernel *k, int buf, kir_e idx) {
  if (k->failed || bad(k, idx) || buf < 0 || buf >= k->nbufs) return k->failed = 1, -1;
  kir_expr e = {KE_LOAD, k->bufs[buf].dtype, 0, buf, idx, -1, 0, 0};
  return push_expr(k, e);
}

kir_e kir_un(kir_kernel *k, int op, kir_e a) {
  if (k->failed || bad(k, a)) return -1;
  kir_expr e = {KE_UN, k->exprs[a].dtype, op, a, -1, -1, 0, 0};
  return push_expr(k, e);
}

static int is_compare(int op) {
  return op == DF_OP_EQ || op == DF_OP_NE || op == DF_OP_LT || op == DF_OP_LE ||
         op == DF_OP_GT || op == DF_OP_GE;
}

kir_e kir_bin(kir_kernel *k, int op, kir_e a, kir_e b) {
  if (k->failed || bad(k, a) || bad(k, b)) return -1;
  kir_expr e = {KE_BIN, is_compare(op) ? DF_BOOL : k->exprs[a].dtype, op, a, b, -1, 0, 0};
  return push_expr(k, e);
}

kir_e kir_select(kir_kernel *k, kir_e c, kir_e a, kir_e b) {
  if (k->failed || bad(k, c) || bad(k, a) || bad(k, b)) return -1;
  kir_expr e = {KE_SELECT, k->exprs[a].dtype, 0, c, a, b, 0, 0};
  return push_expr(k, e);
}

kir_e kir_cast(kir_kernel *k, df_dtype dt, kir_e a) {
  if (k->failed || bad(k, a)) return -1;
  if (k->exprs[a].dtype == dt) return a;
  kir_expr e = {KE_CAST, dt, 0, a, -1, -1, 0, 0};
  return push_expr(k, e);
}

static int is_iconst(const kir_kernel *k, kir_e a, int64_t *v) {
  if (a < 0 || k->exprs[a].kind != KE_CONST || df_dtype_is_float(k->exprs[a].dtype)) return 0;
  *v = k->exprs[a].i;
  return 1;
}

kir_e kir_iadd(kir_kernel *k, kir_e a, kir_e b) {
  int64_t va, vb;
  if (k->failed) return -1;
  if (is_iconst(k, a, &va) && va == 0) return b;
  if (is_iconst(k, b, &vb) && vb == 0) return a;
  if (is_iconst(k, a, &va) && is_iconst(k, b, &vb)) return kir_const_i(k, va + vb);
  return kir_bin(k, DF_OP_ADD, a, b);
}

kir_e kir_imul(kir_kernel *k, kir_e a, int64_t c) {
  int64_t va;
  if (k->failed) return -1;
  if (c == 0) return kir_const_i(k, 0);
  if (c == 1) return a;
  if (is_iconst(k, a, &va)) return kir_const_i(k, va * c);
  return kir_bin(k, DF_OP_MUL, a, kir_const_i(k, c));
}

int kir_for(kir_kernel *k, int64_t extent, unsigned flags) {
  kir_stmt s = {0};
  s.kind = KS_FOR;
  s.var = k->nvars++;
  s.extent = extent;
  s.flags = flags;
  if (flags & KF_PARALLEL) k->parallel_extent = extent;
  push_stmt(k, s);
  return s.var;
}

void kir_end(kir_kernel *k) {
  kir_stmt s = {0};
  s.kind = KS_END;
  push_stmt(k, s);
}

int kir_decl(kir_kernel *k, df_dtype dt, kir_e init) {
  kir_stmt s = {0};
  s.kind = KS_DECL;
  s.var = k->ntmps++;
  s.dtype = dt;
  s.val = init;
  push_stmt(k, s);
  return s.var;
}

void kir_set(kir_kernel *k, int tmp, kir_e v) {
  kir_stmt s = {0};
  s.kind = KS_SET;
  s.var = tmp;
  s.val = v;
  push_stmt(k, s);
}

void kir_acc(kir_kernel *k, int tmp, int op, kir_e v) {
  kir_stmt s = {0};
  s.kind = KS_ACC;
  s.var = tmp;
  s.op = op;
  s.val = v;
  push_stmt(k, s);
}

void kir_store(kir_kernel *k, int buf, kir_e idx, kir_e v) {
  kir_stmt s = {0};
  s.kind = KS_STORE;
  s.buf = buf;
  s.idx = idx;
  s.val = v;
  push_stmt(k, s);
}

void kir_tile_dot(kir_kernel *k, const kir_tile *t) {
  if (k->failed) return;
  kir_e ops[5] = {t->a, t->b, t->c, t->acc, t->n_valid};
  for (int i = 0; i < 5; i++)
    if (bad(k, ops[i])) return;
  if (k->ntiles == k->cap_tiles) {
    int cap = k->cap_tiles ? k->cap_tiles * 2 : 8;
    kir_tile *n = realloc(k->tiles, (size_t)cap * sizeof *n);
    if (!n) {
      k->failed = 1;
      return;
    }
    k->tiles = n;
    k->cap_tiles = cap;
  }
  k->tiles[k->ntiles] = *t;
  kir_stmt s = {0};
  s.kind = KS_TILE_DOT;
  s.var = k->ntiles++;
  s.idx = s.val = -1;
  push_stmt(k, s);
}

int kir_verify(const kir_kernel *k, df_err *err) {
  if (k->failed) return df_err_set(err, DF_ENOMEM, "%s: out of memory building the kernel", k->name);
  int depth = 0;
  for (int i = 0; i < k->nexprs; i++) {
    const kir_expr *e = &k->exprs[i];
    int ops[3] = {e->a, e->b, e->c}, n = 0;
    switch (e->kind) {
    case KE_UN: case KE_CAST: n = 1; break;
    case KE_BIN: n = 2; break;
    case KE_SELECT: n = 3; break;
    case KE_LOAD:
      if (e->a < 0 || e->a >= k->nbufs) return df_err_set(err, DF_EINVAL, "%s: expr %d loads buffer %d", k->name, i, e->a);
      ops[0] = e->b;
      n = 1;
      break;
    default: break;
    }
    for (int j = 0; j < n; j++)
      if (ops[j] < 0 || ops[j] >= i)
        return df_err_set(err, DF_EINVAL, "%s: expr %d uses expr %d", k->name, i, ops[j]);
  }
  for (int i = 0; i < k->nstmts; i++) {
    const kir_stmt *s = &k->stmts[i];
    if (s->kind == KS_FOR) depth++;
    if (s->kind == KS_END && --depth < 0) return df_err_set(err, DF_EINVAL, "%s: END without FOR", k->name);
    if (s->kind == KS_STORE && (s->buf < 0 || s->buf >= k->nbufs || s->idx < 0 || s->val < 0))
      return df_err_set(err, DF_EINVAL, "%s: bad STORE at %d", k->name, i);
    if ((s->kind == KS_DECL || s->kind == KS_SET || s->kind == KS_ACC) && (s->val < 0 || s->var >= k->ntmps))
      return df_err_set(err, DF_EINVAL, "%s: bad assignment at %d", k->name, i);
    if (s->kind == KS_TILE_DOT) {
      const kir_tile *t = s->var >= 0 && s->var < k->ntiles ? &k->tiles[s->var] : NULL;
      int ok = t && t->a_buf >= 0 && t->a_buf < k->nbufs && t->b_buf >= 0 && t->b_buf < k->nbufs &&
               t->c_buf >= 0 && t->c_buf < k->nbufs && t->mr > 0 && t->nr > 0 && t->depth >= 0;
      for (int b = 0; ok && b < 3; b++) {
        int bb = b == 0 ? t->a_buf : b == 1 ? t->b_buf : t->c_buf;
        ok = k->bufs[bb].dtype == (b < 2 && t->kind == KT_BF16_PAIRS ? DF_BF16 : DF_F32);
      }
      if (!ok || (t->kind != KT_F32 && t->kind != KT_BF16_PAIRS))
        return df_err_set(err, DF_EINVAL, "%s: bad TILE_DOT at %d (its kind's buffer dtypes)", k->name, i);
    }
  }
  if (depth != 0) return df_err_set(err, DF_EINVAL, "%s: %d unclosed FOR", k->name, depth);
  return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
  return h;
}
#define H(x) (h = fnv(h, &(x), sizeof(x)))

uint64_t kir_hash(const kir_kernel *k) {
  uint64_t h = 0xcbf29ce484222325ull;
  H(k->nbufs);
  for (int i = 0; i < k->nbufs; i++) {
    H(k->bufs[i].dtype), H(k->bufs[i].numel), H(k->bufs[i].scope), H(k->bufs[i].role);
  }
  for (int i = 0; i < k->nexprs; i++) {
    const kir_expr *e = &k->exprs[i];
    H(e->kind), H(e->dtype), H(e->op), H(e->a), H(e->b), H(e->c), H(e->f), H(e->i);
  }
  for (int i = 0; i < k->nstmts; i++) {
    const kir_stmt *s = &k->stmts[i];
    H(s->kind), H(s->var), H(s->extent), H(s->flags), H(s->op), H(s->dtype), H(s->buf), H(s->idx), H(s->val);
  }
  for (int i = 0; i < k->ntiles; i++) {
    const kir_tile *t = &k->tiles[i];
    H(t->a_buf), H(t->b_buf), H(t->c_buf), H(t->a), H(t->b), H(t->c), H(t->acc), H(t->n_valid);
    H(t->mr), H(t->nr), H(t->depth), H(t->a_m), H(t->a_k), H(t->b_k), H(t->c_m), H(t->kind);
  }
  return h;
}

static void print_expr(const kir_kernel *k, kir_e i, FILE *f) {
  const kir_expr *e = &k->exprs[i];
  switch (e->kind) {
  case KE_CONST:
    if (df_dtype_is_float(e->dtype)) fprintf(f, "%.9g", e->f);
    else fprintf(f, "%" PRId64, e->i);
    break;
  case KE_VAR: fprintf(f, "v%d", e->a); break;
  case KE_TMP: fprintf(f, "t%d", e->a); break;
  case KE_LOAD: fprintf(f, "b%d[", e->a); print_expr(k, e->b, f); fputc(']', f); break;
  case KE_UN: fprintf(f, "%s(", df_op_name(e->op)); print_expr(k, e->a, f); fputc(')', f); break;
  case KE_BIN:
    fprintf(f, "%s(", df_op_name(e->op));
    print_expr(k, e->a, f);
    fputs(", ", f);
    print_expr(k, e->b, f);
    fputc(')', f);
    break;
  case KE_SELECT:
    fputs("select(", f);
    print_expr(k, e->a, f);
    fputs(", ", f);
    print_expr(k, e->b, f);
    fputs(", ", f);
    print_expr(k, e->c, f);
    fputc(')', f);
    break;
  case KE_CAST: fprintf(f, "%s(", df_dtype_lname(e->dtype)); print_expr(k, e->a, f); fputc(')', f); break;
  }
}

void kir_print(const kir_kernel *k, FILE *f) {
  fprintf(f, "kernel %s(", k->name);
  for (int i = 0; i < k->nbufs; i++)
    fprintf(f, "%sb%d: %s%s[%" PRId64 "]%s", i ? ", " : "", i,
            k->bufs[i].role & KB_OUT ? "out " : "", df_dtype_lname(k->bufs[i].dtype), k->bufs[i].numel,
            k->bufs[i].scope == KB_SCRATCH ? " scratch" : "");
  fprintf(f, ")\n");
  int depth = 1;
  for (int i = 0; i < k->nstmts; i++) {
    const kir_stmt *s = &k->stmts[i];
    if (s->kind == KS_END) depth--;
    for (int d = 0; d < depth; d++) fputs("  ", f);
    switch (s->kind) {
    case KS_FOR:
      fprintf(f, "for v%d < %" PRId64 "%s%s%s%s\n", s->var, s->extent, s->flags & KF_PARALLEL ? " parallel" : "",
              s->flags & KF_VECTOR ? " vector" : "", s->flags & KF_REDUCE ? " reduce" : "",
              s->flags & KF_SCALAR ? " scalar" : "");
      depth++;
      break;
    case KS_END: fputs("end\n", f); break;
    case KS_DECL: fprintf(f, "t%d: %s = ", s->var, df_dtype_lname(s->dtype)); print_expr(k, s->val, f); fputc('\n', f); break;
    case KS_SET: fprintf(f, "t%d = ", s->var); print_expr(k, s->val, f); fputc('\n', f); break;
    case KS_ACC:
      fprintf(f, "t%d %s= ", s->var, s->op == DF_OP_MAX ? "max" : "+");
      print_expr(k, s->val, f);
      fputc('\n', f);
      break;
    case KS_STORE:
      fprintf(f, "b%d[", s->buf);
      print_expr(k, s->idx, f);
      fputs("] = ", f);
      print_expr(k, s->val, f);
      fputc('\n', f);
      break;
    case KS_TILE_DOT: {
      const kir_tile *t = &k->tiles[s->var];
      fprintf(f, "tile_dot%s %" PRId64 "x%" PRId64 " depth %" PRId64 ": b%d[", t->kind == KT_BF16_PAIRS ? "_bf16_pairs" : "",
              t->mr, t->nr, t->depth, t->c_buf);
      print_expr(k, t->c, f);
      fprintf(f, " + i*%" PRId64 " + j] (j < ", t->c_m);
      print_expr(k, t->n_valid, f);
      fputs(") = (", f);
      print_expr(k, t->acc, f);
      fprintf(f, " ? C : 0) + sum_p b%d[", t->a_buf);
      print_expr(k, t->a, f);
      fprintf(f, " + i*%" PRId64 " + p*%" PRId64 "] * b%d[", t->a_m, t->a_k, t->b_buf);
      print_expr(k, t->b, f);
      fprintf(f, " + p*%" PRId64 " + j]\n", t->b_k);
      break;
    }
    }
  }
}

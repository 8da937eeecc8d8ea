/*
** kir_interp.c -- see kir_interp.h.
**
** Statements run recursively over the FOR ... END brackets; expressions
** are evaluated on demand and remembered for the duration of one statement
** (a stamp per expression), so a shared subexpression is computed once.
*/
#include "compiler/kir_interp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct val {
  double f;   /* float dtypes */
  int64_t i;  /* integers and bools */
} val;

typedef struct interp {
  const kir_kernel *k;
  void *const *bufs;
  int *match;          /* FOR -> its END */
  int64_t *vars;
  val *tmps;
  val *memo;
  uint64_t *stamp;
  uint64_t gen;
  df_err *err;
  int rc;
} interp;

static int is_f(df_dtype t) { return df_dtype_is_float(t); }

static int64_t get_int(df_dtype t, const void *p, int64_t i) {
  switch (t) {
  case DF_I64: return ((const int64_t *)p)[i];
  case DF_I32: return ((const int32_t *)p)[i];
  case DF_U8: return ((const uint8_t *)p)[i];
  case DF_BOOL: return ((const uint8_t *)p)[i] != 0;
  default: return (int64_t)df_dtype_get(t, p, (size_t)i);
  }
}

static void set_int(df_dtype t, void *p, int64_t i, int64_t v) {
  switch (t) {
  case DF_I64: ((int64_t *)p)[i] = v; break;
  case DF_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case DF_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case DF_BOOL: ((uint8_t *)p)[i] = v != 0; break;
  default: df_dtype_set(t, p, (size_t)i, (double)v); break;
  }
}

/* A value of dtype `from` as dtype `to`. */
static val convert(val v, df_dtype from, df_dtype to) {
  val r = {0, 0};
  if (to == DF_BOOL) {
    r.i = is_f(from) ? (v.f != 0 || isnan(v.f)) : v.i != 0;
  } else if (is_f(to)) {
    r.f = is_f(from) ? v.f : (double)v.i;
    if (to == DF_F16 || to == DF_BF16) { /* a 16-bit float holds only what it can (as the code generators) */
      uint16_t h;
      df_dtype_set(to, &h, 0, r.f);
      r.f = df_dtype_get(to, &h, 0);
    }
  } else {
    int64_t x = is_f(from) ? (isfinite(v.f) && fabs(v.f) < 9.2e18 ? (int64_t)v.f : 0) : v.i;
    switch (to) {
    case DF_I32: x = (int32_t)x; break;
    case DF_U8: x = (uint8_t)x; break;
    default: break;
    }
    r.i = x;
  }
  return r;
}

/* A bfloat16 (its bits) as a float. */
static float bf16f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static int truthy(val v, df_dtype t) { return is_f(t) ? (v.f != 0 || isnan(v.f)) : v.i != 0; }

static int out_of_range(interp *I, int b, int64_t idx, const char *what) {
  if (I->rc == 0)
    I->rc = df_err_set(I->err, DF_EINVAL, "kir_interp: %s: %s b%d[%lld] is outside its %lld elements", I->k->name,
                       what, b, (long long)idx, (long long)I->k->bufs[b].numel);
  return I->rc;
}

static val ev(interp *I, kir_e id);

static val ev_uncached(interp *I, const kir_expr *e) {
  val r = {0, 0};
  switch (e->kind) {
  case KE_CONST:
    if (is_f(e->dtype)) r.f = e->f;
    else r.i = e->dtype == DF_BOOL ? e->i != 0 : e->i;
    return r;
  case KE_VAR: r.i = I->vars[e->a]; return r;
  case KE_TMP: return I->tmps[e->a];
  case KE_LOAD: {
    const kir_buf *b = &I->k->bufs[e->a];
    int64_t idx = ev(I, e->b).i;
    if (idx < 0 || idx >= b->numel) {
      out_of_range(I, e->a, idx, "load");
      return r;
    }
    if (is_f(b->dtype)) r.f = df_dtype_get(b->dtype, I->bufs[e->a], (size_t)idx);
    else r.i = get_int(b->dtype, I->bufs[e->a], idx);
    return r;
  }
  case KE_UN: {
    val a = ev(I, e->a);
    if (!is_f(e->dtype)) {
      if (e->op == DF_OP_NEG) r.i = -a.i;
      else if (e->op == DF_OP_ABS) r.i = a.i < 0 ? -a.i : a.i;
      else r.i = a.i;
      return r;
    }
    double x = a.f;
    switch (e->op) {
    case DF_OP_NEG: r.f = -x; break;
    case DF_OP_EXP: r.f = exp(x); break;
    case DF_OP_LOG: r.f = log(x); break;
    case DF_OP_SQRT: r.f = sqrt(x); break;
    case DF_OP_RSQRT: r.f = 1.0 / sqrt(x); break;
    case DF_OP_TANH: r.f = tanh(x); break;
    case DF_OP_ERF: r.f = erf(x); break;
    case DF_OP_ABS: r.f = fabs(x); break;
    case DF_OP_RECIP: r.f = 1.0 / x; break;
    default:
      if (I->rc == 0) I->rc = df_err_set(I->err, DF_EUNSUPPORTED, "kir_interp: %s: unary op %d", I->k->name, e->op);
      break;
    }
    return r;
  }
  case KE_BIN: {
    df_dtype ot = I->k->exprs[e->a].dtype;
    val a = ev(I, e->a), b = ev(I, e->b);
    if (is_f(ot)) {
      double x = a.f, y = b.f;
      switch (e->op) {
      case DF_OP_ADD: r.f = x + y; break;
      case DF_OP_SUB: r.f = x - y; break;
      case DF_OP_MUL: r.f = x * y; break;
      case DF_OP_DIV: r.f = x / y; break;
      case DF_OP_MAX: r.f = (x > y || isnan(x) || isnan(y)) ? x : y; break; /* unordered: a */
      case DF_OP_MIN: r.f = (x < y || isnan(x) || isnan(y)) ? x : y; break;
      case DF_OP_POW: r.f = pow(x, y); break;
      case DF_OP_EQ: r.i = x == y; break;
      case DF_OP_NE: r.i = !(x == y); break;
      case DF_OP_LT: r.i = x < y; break;
      case DF_OP_LE: r.i = x <= y; break;
      case DF_OP_GT: r.i = x > y; break;
      case DF_OP_GE: r.i = x >= y; break;
      default:
        if (I->rc == 0) I->rc = df_err_set(I->err, DF_EUNSUPPORTED, "kir_interp: %s: binary op %d", I->k->name, e->op);
      }
      return r;
    }
    int64_t x = a.i, y = b.i;
    switch (e->op) {
    case DF_OP_ADD: r.i = (int64_t)((uint64_t)x + (uint64_t)y); break;
    case DF_OP_SUB: r.i = (int64_t)((uint64_t)x - (uint64_t)y); break;
    case DF_OP_MUL: r.i = (int64_t)((uint64_t)x * (uint64_t)y); break;
    case DF_OP_DIV: r.i = y == 0 || (y == -1 && x == INT64_MIN) ? 0 : x / y; break;
    case DF_OP_MAX: r.i = x > y ? x : y; break;
    case DF_OP_MIN: r.i = x < y ? x : y; break;
    case DF_OP_EQ: r.i = x == y; break;
    case DF_OP_NE: r.i = x != y; break;
    case DF_OP_LT: r.i = x < y; break;
    case DF_OP_LE: r.i = x <= y; break;
    case DF_OP_GT: r.i = x > y; break;
    case DF_OP_GE: r.i = x >= y; break;
    default:
      if (I->rc == 0) I->rc = df_err_set(I->err, DF_EUNSUPPORTED, "kir_interp: %s: binary op %d", I->k->name, e->op);
    }
    if (!is_f(e->dtype)) r = convert(r, DF_I64, e->dtype);
    return r;
  }
  case KE_SELECT: {
    val c = ev(I, e->a);
    return truthy(c, I->k->exprs[e->a].dtype) ? ev(I, e->b) : ev(I, e->c);
  }
  case KE_CAST: return convert(ev(I, e->a), I->k->exprs[e->a].dtype, e->dtype);
  }
  return r;
}

static val ev(interp *I, kir_e id) {
  if (I->stamp[id] == I->gen) return I->memo[id];
  val v = ev_uncached(I, &I->k->exprs[id]);
  I->memo[id] = v;
  I->stamp[id] = I->gen;
  return v;
}

/* Run statements [a, b). */
static void run(interp *I, int a, int b) {
  const kir_kernel *k = I->k;
  for (int i = a; i < b && I->rc == 0; i++) {
    const kir_stmt *s = &k->stmts[i];
    I->gen++;
    switch (s->kind) {
    case KS_FOR: {
      int end = I->match[i];
      for (int64_t v = 0; v < s->extent && I->rc == 0; v++) {
        I->vars[s->var] = v;
        run(I, i + 1, end);
      }
      i = end;
      break;
    }
    case KS_END: break;
    case KS_DECL:
      I->tmps[s->var] = convert(ev(I, s->val), k->exprs[s->val].dtype, s->dtype);
      break;
    case KS_SET: I->tmps[s->var] = ev(I, s->val); break;
    case KS_ACC: {
      df_dtype t = k->exprs[s->val].dtype;
      val v = ev(I, s->val), *cur = &I->tmps[s->var];
      if (is_f(t)) {
        if (s->op == DF_OP_MAX) cur->f = (v.f > cur->f || isnan(v.f) || isnan(cur->f)) ? v.f : cur->f;
        else cur->f += v.f;
      } else {
        if (s->op == DF_OP_MAX) cur->i = v.i > cur->i ? v.i : cur->i;
        else cur->i += v.i;
      }
      break;
    }
    case KS_STORE: {
      const kir_buf *bf = &k->bufs[s->buf];
      int64_t idx = ev(I, s->idx).i;
      val v = ev(I, s->val);
      if (I->rc) break;
      if (idx < 0 || idx >= bf->numel) {
        out_of_range(I, s->buf, idx, "store");
        break;
      }
      val c = convert(v, k->exprs[s->val].dtype, bf->dtype);
      if (is_f(bf->dtype)) df_dtype_set(bf->dtype, I->bufs[s->buf], (size_t)idx, c.f);
      else set_int(bf->dtype, I->bufs[s->buf], idx, c.i);
      break;
    }
    case KS_TILE_DOT: {
      const kir_tile *t = &k->tiles[s->var];
      int64_t a = ev(I, t->a).i, b = ev(I, t->b).i, c = ev(I, t->c).i, nv = ev(I, t->n_valid).i;
      int acc = truthy(ev(I, t->acc), k->exprs[t->acc].dtype);
      const float *A = I->bufs[t->a_buf], *B = I->bufs[t->b_buf];
      const uint16_t *A16 = I->bufs[t->a_buf], *B16 = I->bufs[t->b_buf];
      int pairs = t->kind == KT_BF16_PAIRS, w = pairs ? 2 : 1; /* elements per step */
      float *C = I->bufs[t->c_buf];
      if (nv > t->nr) nv = t->nr;
      for (int64_t i = 0; i < t->mr && I->rc == 0; i++)
        for (int64_t j = 0; j < nv && I->rc == 0; j++) {
          int64_t ci = c + i * t->c_m + j;
          int64_t alast = a + i * t->a_m + (t->depth - 1) * t->a_k + w - 1,
                  blast = b + (t->depth - 1) * t->b_k + w * j + w - 1;
          if (ci < 0 || ci >= k->bufs[t->c_buf].numel) out_of_range(I, t->c_buf, ci, "tile store");
          else if (t->depth > 0 && (a + i * t->a_m < 0 || alast < 0 || alast >= k->bufs[t->a_buf].numel))
            out_of_range(I, t->a_buf, alast, "tile load");
          else if (t->depth > 0 && (b + j < 0 || blast < 0 || blast >= k->bufs[t->b_buf].numel))
            out_of_range(I, t->b_buf, blast, "tile load");
          if (I->rc) break;
          float sum = acc ? C[ci] : 0.0f;
          if (pairs) {
            for (int64_t p = 0; p < t->depth; p++) {
              int64_t ai = a + i * t->a_m + p * t->a_k, bi = b + p * t->b_k + 2 * j;
              sum += bf16f(A16[ai]) * bf16f(B16[bi]) + bf16f(A16[ai + 1]) * bf16f(B16[bi + 1]);
            }
          } else {
            for (int64_t p = 0; p < t->depth; p++)
              sum = fmaf(A[a + i * t->a_m + p * t->a_k], B[b + p * t->b_k + j], sum);
          }
          C[ci] = sum;
        }
      break;
    }
    }
  }
}

int kir_interp_run(const kir_kernel *k, void *const *bufs, df_err *err) {
  int rc = kir_verify(k, err);
  if (rc) return rc;
  interp I;
  memset(&I, 0, sizeof I);
  I.k = k;
  I.bufs = bufs;
  I.err = err;
  I.match = malloc(((size_t)k->nstmts + 1) * sizeof *I.match);
  I.vars = calloc((size_t)k->nvars + 1, sizeof *I.vars);
  I.tmps = calloc((size_t)k->ntmps + 1, sizeof *I.tmps);
  I.memo = calloc((size_t)k->nexprs + 1, sizeof *I.memo);
  I.stamp = calloc((size_t)k->nexprs + 1, sizeof *I.stamp);
  int *stack = malloc(((size_t)k->nstmts + 1) * sizeof *stack);
  if (!I.match || !I.vars || !I.tmps || !I.memo || !I.stamp || !stack) {
    rc = df_err_set(err, DF_ENOMEM, "kir_interp: out of memory");
  } else {
    int depth = 0;
    for (int i = 0; i < k->nstmts; i++) {
      if (k->stmts[i].kind == KS_FOR) stack[depth++] = i;
      else if (k->stmts[i].kind == KS_END && depth > 0) I.match[stack[--depth]] = i;
    }
    run(&I, 0, k->nstmts);
    rc = I.rc;
  }
  free(stack);
  free(I.match), free(I.vars), free(I.tmps), free(I.memo), free(I.stamp);
  return rc;
}

double kir_interp_work(const kir_kernel *k) {
  double trips[64], total = 0;
  int depth = 0;
  trips[0] = 1;
  for (int i = 0; i < k->nstmts; i++) {
    const kir_stmt *s = &k->stmts[i];
    if (s->kind == KS_FOR) {
      if (depth < 63) {
        trips[depth + 1] = trips[depth] * (double)s->extent;
        depth++;
      }
    } else if (s->kind == KS_END) {
      if (depth > 0) depth--;
    } else {
      total += trips[depth];
    }
  }
  return total;
}

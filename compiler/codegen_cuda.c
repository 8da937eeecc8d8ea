/*
** codegen_cuda.c -- see codegen_cuda.h.  Each statement evaluates the
** expressions it needs as const locals in expression order (the Kernel IR
** pool is topologically sorted), inside a block of its own.
*/
#include "compiler/codegen_cuda.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *ctype(df_dtype t) {
  switch (t) {
  case DF_F64: return "double";
  case DF_F32: return "float";
  case DF_F16: case DF_BF16: return "unsigned short";
  case DF_I64: return "long long";
  case DF_I32: return "int";
  case DF_U8: case DF_BOOL: return "unsigned char";
  default: return "long long";
  }
}

/* The type of an expression's value (bools are bool in registers). */
static const char *vtype(df_dtype t) { return t == DF_BOOL ? "bool" : ctype(t); }

static const char *math(int op, df_dtype t) {
  int f = t == DF_F32;
  switch (op) {
  case DF_OP_EXP: return f ? "expf" : "exp";
  case DF_OP_LOG: return f ? "logf" : "log";
  case DF_OP_SQRT: return f ? "sqrtf" : "sqrt";
  case DF_OP_RSQRT: return f ? "rsqrtf" : "rsqrt";
  case DF_OP_TANH: return f ? "tanhf" : "tanh";
  case DF_OP_ERF: return f ? "erff" : "erf";
  case DF_OP_ABS: return f ? "fabsf" : "fabs";
  case DF_OP_POW: return f ? "powf" : "pow";
  default: return NULL;
  }
}

/* Mark the expressions that expression e needs. */
static void need(const kir_kernel *k, kir_e e, unsigned char *used) {
  if (e < 0 || used[e]) return;
  used[e] = 1;
  const kir_expr *x = &k->exprs[e];
  switch (x->kind) {
  case KE_LOAD: need(k, x->b, used); break;
  case KE_UN: case KE_CAST: need(k, x->a, used); break;
  case KE_BIN: need(k, x->a, used); need(k, x->b, used); break;
  case KE_SELECT: need(k, x->a, used); need(k, x->b, used); need(k, x->c, used); break;
  default: break;
  }
}

static void print_expr_def(const kir_kernel *k, kir_e i, FILE *f) {
  const kir_expr *e = &k->exprs[i];
  const char *T = vtype(e->dtype);
  fprintf(f, "const %s e%d = ", T, i);
  switch (e->kind) {
  case KE_CONST:
    if (df_dtype_is_float(e->dtype)) {
      if (e->f != e->f) fprintf(f, "(%s)NAN", T);
      else if (e->f == 1.0 / 0.0) fprintf(f, "(%s)INFINITY", T);
      else if (e->f == -1.0 / 0.0) fprintf(f, "-(%s)INFINITY", T);
      else fprintf(f, "(%s)%.17g", T, e->f);
    } else if (e->dtype == DF_BOOL) {
      fprintf(f, "%s", e->i ? "true" : "false");
    } else {
      fprintf(f, "(%s)%" PRId64 "LL", T, e->i);
    }
    break;
  case KE_VAR: fprintf(f, "v%d", e->a); break;
  case KE_TMP: fprintf(f, "t%d", e->a); break;
  case KE_LOAD:
    if (k->bufs[e->a].dtype == DF_BOOL) fprintf(f, "b%d[e%d] != 0", e->a, e->b);
    else fprintf(f, "b%d[e%d]", e->a, e->b);
    break;
  case KE_UN: {
    const char *m = math(e->op, e->dtype);
    if (e->op == DF_OP_NEG) fprintf(f, "-e%d", e->a);
    else if (e->op == DF_OP_RECIP) fprintf(f, "(%s)1 / e%d", T, e->a);
    else if (e->op == DF_OP_ABS && !df_dtype_is_float(e->dtype)) fprintf(f, "e%d < 0 ? -e%d : e%d", e->a, e->a, e->a);
    else fprintf(f, "%s(e%d)", m ? m : "/*?*/", e->a);
    break;
  }
  case KE_BIN: {
    df_dtype ot = k->exprs[e->a].dtype;
    int a = e->a, b = e->b;
    switch (e->op) {
    case DF_OP_ADD: fprintf(f, "e%d + e%d", a, b); break;
    case DF_OP_SUB: fprintf(f, "e%d - e%d", a, b); break;
    case DF_OP_MUL: fprintf(f, "e%d * e%d", a, b); break;
    case DF_OP_DIV:
      if (df_dtype_is_float(ot)) fprintf(f, "e%d / e%d", a, b);
      else fprintf(f, "e%d == 0 ? (%s)0 : e%d / e%d", b, T, a, b);
      break;
    case DF_OP_MAX: /* as ref: a NaN in a wins */
      if (df_dtype_is_float(ot)) fprintf(f, "(e%d > e%d || e%d != e%d) ? e%d : e%d", a, b, a, a, a, b);
      else fprintf(f, "e%d > e%d ? e%d : e%d", a, b, a, b);
      break;
    case DF_OP_MIN:
      if (df_dtype_is_float(ot)) fprintf(f, "(e%d < e%d || e%d != e%d) ? e%d : e%d", a, b, a, a, a, b);
      else fprintf(f, "e%d < e%d ? e%d : e%d", a, b, a, b);
      break;
    case DF_OP_POW: fprintf(f, "%s(e%d, e%d)", math(DF_OP_POW, ot), a, b); break;
    case DF_OP_EQ: fprintf(f, "e%d == e%d", a, b); break;
    case DF_OP_NE: fprintf(f, "e%d != e%d", a, b); break;
    case DF_OP_LT: fprintf(f, "e%d < e%d", a, b); break;
    case DF_OP_LE: fprintf(f, "e%d <= e%d", a, b); break;
    case DF_OP_GT: fprintf(f, "e%d > e%d", a, b); break;
    case DF_OP_GE: fprintf(f, "e%d >= e%d", a, b); break;
    default: fprintf(f, "/* op %d */ 0", e->op); break;
    }
    break;
  }
  case KE_SELECT: fprintf(f, "(e%d) ? e%d : e%d", e->a, e->b, e->c); break;
  case KE_CAST:
    if (e->dtype == DF_BOOL) fprintf(f, "e%d != 0", e->a);
    else fprintf(f, "(%s)e%d", T, e->a);
    break;
  }
  fputs(";\n", f);
}

static void indent(FILE *f, int d) {
  for (int i = 0; i < d; i++) fputs("  ", f);
}

/* Print the expressions statement s needs, then its effect. */
static void print_stmt_exprs(const kir_kernel *k, const kir_e *roots, int nroots, unsigned char *used, FILE *f, int d) {
  memset(used, 0, (size_t)k->nexprs);
  for (int r = 0; r < nroots; r++) need(k, roots[r], used);
  for (int i = 0; i < k->nexprs; i++)
    if (used[i]) {
      indent(f, d);
      print_expr_def(k, i, f);
    }
}

static void print_kernel(const kir_kernel *k, FILE *f) {
  /* named by its Kernel IR hash, as on the CPU: identical kernels are one */
  fprintf(f, "// %s\nextern \"C\" __global__ void dferc_%016llx(", k->name,
          (unsigned long long)kir_hash(k));
  for (int i = 0; i < k->nbufs; i++) fprintf(f, "%s *__restrict__ b%d, ", ctype(k->bufs[i].dtype), i);
  fputs("long long start, long long end) {\n", f);
  unsigned char *used = calloc((size_t)k->nexprs + 1, 1);
  int d = 1;
  for (int i = 0; i < k->nstmts && used; i++) {
    const kir_stmt *s = &k->stmts[i];
    switch (s->kind) {
    case KS_FOR:
      indent(f, d);
      if (s->flags & KF_PARALLEL)
        fprintf(f, "{ const long long v%d = start + (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                   "  if (v%d >= end) return;\n", s->var, s->var);
      else
        fprintf(f, "for (long long v%d = 0; v%d < %" PRId64 "LL; v%d++) {\n", s->var, s->var, s->extent, s->var);
      d++;
      break;
    case KS_END:
      d--;
      indent(f, d);
      fputs("}\n", f);
      break;
    case KS_DECL:
      indent(f, d);
      fprintf(f, "%s t%d;\n", vtype(s->dtype), s->var);
      /* fall through */
    case KS_SET:
    case KS_ACC:
    case KS_STORE: {
      kir_e roots[2] = {s->val, s->idx};
      indent(f, d);
      fputs("{\n", f);
      print_stmt_exprs(k, roots, s->kind == KS_STORE ? 2 : 1, used, f, d + 1);
      indent(f, d + 1);
      if (s->kind == KS_STORE) {
        if (k->bufs[s->buf].dtype == DF_BOOL) fprintf(f, "b%d[e%d] = e%d ? 1 : 0;\n", s->buf, s->idx, s->val);
        else fprintf(f, "b%d[e%d] = e%d;\n", s->buf, s->idx, s->val);
      } else if (s->kind == KS_ACC && s->op == DF_OP_MAX) {
        fprintf(f, "if (e%d > t%d || e%d != e%d) t%d = e%d;\n", s->val, s->var, s->val, s->val, s->var, s->val);
      } else if (s->kind == KS_ACC) {
        fprintf(f, "t%d += e%d;\n", s->var, s->val);
      } else {
        fprintf(f, "t%d = e%d;\n", s->var, s->val);
      }
      indent(f, d);
      fputs("}\n", f);
      break;
    }
    case KS_TILE_DOT: break;
    }
  }
  free(used);
  fputs("}\n\n", f);
}

void df_cuda_print(kir_kernel *const *ks, int n, FILE *f) {
  fputs("// generated by dferc from its Kernel IR\n"
        "#define NAN __int_as_float(0x7fffffff)\n"
        "#define INFINITY __int_as_float(0x7f800000)\n\n", f);
  uint64_t *seen = calloc((size_t)n + 1, sizeof *seen);
  for (int i = 0; i < n; i++) {
    int dup = 0;
    uint64_t h = kir_hash(ks[i]);
    for (int j = 0; seen && j < i && !dup; j++) dup = seen[j] == h;
    if (seen) seen[i] = h;
    if (!dup) print_kernel(ks[i], f);
  }
  free(seen);
}

char *df_cuda_source(kir_kernel *const *ks, int n) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  df_cuda_print(ks, n, f);
  fclose(f);
  return buf;
}

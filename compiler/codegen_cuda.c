/*
** codegen_cuda.c -- see codegen_cuda.h.  Each statement evaluates the
** expressions it needs as const locals in expression order (the Kernel IR
** pool is topologically sorted), inside a block of its own.
*/
#include "compiler/codegen_cuda.h"

#include "runtime/tensor.h" /* df_shape_numel, as schedule.c */

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

/* The type of an expression's value: bools are bool in registers, 16-bit
** floats are computed on as float32 (as the cpu device does), stored in
** 16 bits. */
static const char *vtype(df_dtype t) {
  if (t == DF_F16 || t == DF_BF16) return "float";
  return t == DF_BOOL ? "bool" : ctype(t);
}

static int narrow16(df_dtype t) { return t == DF_F16 || t == DF_BF16; }
static const char *widen_fn(df_dtype t) { return t == DF_F16 ? "dferc_f16_f32" : "dferc_bf16_f32"; }
static const char *narrow_fn(df_dtype t) { return t == DF_F16 ? "dferc_f32_f16" : "dferc_f32_bf16"; }

static const char *math(int op, df_dtype t) {
  int f = t == DF_F32 || narrow16(t);
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
    else if (narrow16(k->bufs[e->a].dtype)) fprintf(f, "%s(b%d[e%d])", widen_fn(k->bufs[e->a].dtype), e->a, e->b);
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
    else if (narrow16(e->dtype)) /* the value a 16-bit float can hold */
      fprintf(f, "%s(%s((float)e%d))", widen_fn(e->dtype), narrow_fn(e->dtype), e->a);
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

/* An elementwise kernel: its PARALLEL loop holds exactly one VECTOR loop
** and nothing else.  Its index of the VECTOR loop (statement 1) is
** returned (its END then is statement nstmts - 2), else -1. */
static int flat_vector_loop(const kir_kernel *k) {
  if (k->nstmts < 4 || k->stmts[0].kind != KS_FOR || !(k->stmts[0].flags & KF_PARALLEL)) return -1;
  if (k->stmts[1].kind != KS_FOR || !(k->stmts[1].flags & KF_VECTOR)) return -1;
  if (k->stmts[k->nstmts - 1].kind != KS_END || k->stmts[k->nstmts - 2].kind != KS_END) return -1;
  int depth = 0;
  for (int i = 1; i < k->nstmts - 1; i++) {
    depth += k->stmts[i].kind == KS_FOR;
    depth -= k->stmts[i].kind == KS_END;
    if (depth == 0) return i == k->nstmts - 2 ? 1 : -1; /* the VECTOR loop closed */
  }
  return -1;
}

/* A reduction kernel that a block of threads computes together:
**   FOR PARALLEL; DECL acc = 0 | -inf ...; FOR REDUCE (perfectly nested)
**   { no loops, no stores, only ACC into those accumulators }; END ...;
**   the epilogue (no loops); END
** with at least DF_CUDA_BLOCK_REDUCE_MIN reduced elements.  Each thread
** accumulates a strided share of the flattened reduction, the block
** combines the partials in shared memory (a fixed tree: runs repeat bit
** for bit), thread 0 runs the epilogue. */
#define RED_THREADS 128
#define RED_MAX_ACC 16
#define DF_CUDA_BLOCK_REDUCE_MIN 256
typedef struct red_form {
  int ndecl;              /* statements 1 .. ndecl: the accumulators */
  int acc[RED_MAX_ACC];   /* their temporaries */
  int op[RED_MAX_ACC];    /* DF_OP_ADD or DF_OP_MAX */
  int first, nloops;      /* the REDUCE loops: statements first .. first + nloops - 1 */
  int body_end;           /* the first END of the loops */
  int64_t R;              /* reduced elements */
} red_form;

static int block_reduce_form(const kir_kernel *k, red_form *r) {
  memset(r, 0, sizeof *r);
  if (k->nstmts < 6 || k->stmts[0].kind != KS_FOR || !(k->stmts[0].flags & KF_PARALLEL)) return 0;
  if (k->stmts[k->nstmts - 1].kind != KS_END) return 0;
  int i = 1;
  while (i < k->nstmts && k->stmts[i].kind == KS_DECL) {
    const kir_stmt *s = &k->stmts[i];
    if (r->ndecl == RED_MAX_ACC || s->val < 0 || k->exprs[s->val].kind != KE_CONST) return 0;
    r->acc[r->ndecl] = s->var;
    r->op[r->ndecl++] = -1;
    i++;
  }
  if (r->ndecl == 0) return 0;
  r->first = i;
  r->R = 1;
  while (i < k->nstmts && k->stmts[i].kind == KS_FOR) {
    if (!(k->stmts[i].flags & KF_REDUCE) || (k->stmts[i].flags & (KF_VECTOR | KF_PARALLEL))) return 0;
    r->R *= k->stmts[i].extent;
    r->nloops++;
    i++;
  }
  if (r->nloops == 0 || r->R < DF_CUDA_BLOCK_REDUCE_MIN) return 0;
  for (; i < k->nstmts && k->stmts[i].kind != KS_END; i++) {
    const kir_stmt *s = &k->stmts[i];
    int a = -1;
    for (int j = 0; j < r->ndecl; j++)
      if (r->acc[j] == s->var) a = j;
    if (s->kind == KS_FOR || s->kind == KS_STORE || s->kind == KS_TILE_DOT) return 0;
    if (s->kind == KS_ACC) {
      if (a < 0 || (s->op != DF_OP_ADD && s->op != DF_OP_MAX) || (r->op[a] >= 0 && r->op[a] != s->op)) return 0;
      r->op[a] = s->op;
    } else if (a >= 0) {
      return 0; /* an accumulator set inside the loop */
    }
  }
  r->body_end = i;
  for (int j = 0; j < r->nloops; j++, i++)
    if (i >= k->nstmts || k->stmts[i].kind != KS_END) return 0;
  for (; i < k->nstmts - 1; i++)
    if (k->stmts[i].kind == KS_FOR || k->stmts[i].kind == KS_END) return 0;
  /* every accumulator is reduced, from its identity */
  for (int j = 0; j < r->ndecl; j++) {
    if (r->op[j] < 0) return 0;
    const kir_expr *e = &k->exprs[k->stmts[1 + j].val];
    int fl = df_dtype_is_float(e->dtype);
    if (r->op[j] == DF_OP_ADD && !(fl ? e->f == 0.0 : e->i == 0)) return 0;
    if (r->op[j] == DF_OP_MAX && !(fl && e->f == -1.0 / 0.0)) return 0;
  }
  return 1;
}

void df_cuda_kernel_launch(const kir_kernel *k, int64_t *blocks, int *threads, int64_t *end) {
  red_form r;
  int64_t n = k->parallel_extent;
  if (flat_vector_loop(k) == 1) n *= k->stmts[1].extent;
  *end = n;
  if (block_reduce_form(k, &r)) {
    *blocks = n;
    *threads = RED_THREADS;
    return;
  }
  *threads = n < 128 ? (int)(n > 0 ? n : 1) : 128;
  *blocks = (n + 127) / 128;
}

/* The block reduction's combination: partials into shared memory, a
** tree over the block, thread 0 goes on with the results. */
static void print_block_combine(const kir_kernel *k, const red_form *r, FILE *f, int d) {
  for (int j = 0; j < r->ndecl; j++) {
    indent(f, d);
    fprintf(f, "red%d_[threadIdx.x] = t%d;\n", j, r->acc[j]);
  }
  indent(f, d);
  fputs("__syncthreads();\n", f);
  indent(f, d);
  fputs("for (int s_ = blockDim.x / 2; s_ > 0; s_ >>= 1) {\n", f);
  indent(f, d + 1);
  fputs("if (threadIdx.x < s_) {\n", f);
  for (int j = 0; j < r->ndecl; j++) {
    indent(f, d + 2);
    if (r->op[j] == DF_OP_ADD)
      fprintf(f, "red%d_[threadIdx.x] += red%d_[threadIdx.x + s_];\n", j, j);
    else /* as ACC max: a NaN wins */
      fprintf(f, "{ const %s b_ = red%d_[threadIdx.x + s_]; if (b_ > red%d_[threadIdx.x] || b_ != b_) red%d_[threadIdx.x] = b_; }\n",
              vtype(k->stmts[1 + j].dtype), j, j, j);
  }
  indent(f, d + 1);
  fputs("}\n", f);
  indent(f, d + 1);
  fputs("__syncthreads();\n", f);
  indent(f, d);
  fputs("}\n", f);
  indent(f, d);
  fputs("if (threadIdx.x != 0) return;\n", f);
  for (int j = 0; j < r->ndecl; j++) {
    indent(f, d);
    fprintf(f, "t%d = red%d_[0];\n", r->acc[j], j);
  }
}

static void print_kernel(const kir_kernel *k, FILE *f) {
  /* named by its Kernel IR hash, as on the CPU: identical kernels are one */
  int flat = flat_vector_loop(k) == 1;
  red_form rf;
  int red = !flat && block_reduce_form(k, &rf);
  int64_t blocks, end;
  int threads;
  df_cuda_kernel_launch(k, &blocks, &threads, &end);
  fprintf(f, "// %s: %" PRId64 " blocks of %d threads%s\nextern \"C\" __global__ void dferc_%016llx(", k->name,
          blocks, threads, red ? " (block reduction)" : "", (unsigned long long)kir_hash(k));
  for (int i = 0; i < k->nbufs; i++) fprintf(f, "%s *__restrict__ b%d, ", ctype(k->bufs[i].dtype), i);
  fputs("long long start, long long end) {\n", f);
  for (int j = 0; red && j < rf.ndecl; j++)
    fprintf(f, "  __shared__ %s red%d_[%d];\n", vtype(k->stmts[1 + j].dtype), j, RED_THREADS);
  unsigned char *used = calloc((size_t)k->nexprs + 1, 1);
  int d = 1;
  for (int i = 0; i < k->nstmts && used; i++) {
    const kir_stmt *s = &k->stmts[i];
    switch (s->kind) {
    case KS_FOR:
      if (red && i > rf.first && i < rf.first + rf.nloops) break; /* folded into the strided loop */
      indent(f, d);
      if (red && i == 0) {
        fprintf(f, "{ const long long v%d = start + (long long)blockIdx.x;\n"
                   "  if (v%d >= end) return;\n", s->var, s->var);
      } else if (red && i == rf.first) {
        /* the nested REDUCE loops as one strided loop over their elements */
        fprintf(f, "for (long long r_ = threadIdx.x; r_ < %" PRId64 "LL; r_ += blockDim.x) {\n", rf.R);
        int64_t inner = rf.R;
        for (int j = 0; j < rf.nloops; j++) {
          const kir_stmt *l = &k->stmts[rf.first + j];
          inner /= l->extent;
          indent(f, d + 1);
          fprintf(f, "const long long v%d = (r_ / %" PRId64 "LL) %% %" PRId64 "LL;\n", l->var, inner, l->extent);
        }
      } else if (flat && i == 0) {
        /* one thread per element: adjacent threads, adjacent elements */
        const kir_stmt *vl = &k->stmts[1];
        fprintf(f, "{ const long long i_ = start + (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                   "  if (i_ >= end) return;\n"
                   "  const long long v%d = i_ / %" PRId64 "LL, v%d = i_ %% %" PRId64 "LL;\n",
                s->var, vl->extent, vl->var, vl->extent);
      } else if (flat && i == 1) {
        fputs("{\n", f);
      } else if (s->flags & KF_PARALLEL)
        fprintf(f, "{ const long long v%d = start + (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                   "  if (v%d >= end) return;\n", s->var, s->var);
      else
        fprintf(f, "for (long long v%d = 0; v%d < %" PRId64 "LL; v%d++) {\n", s->var, s->var, s->extent, s->var);
      d++;
      break;
    case KS_END:
      if (red && i > rf.body_end && i < rf.body_end + rf.nloops) break; /* folded loops */
      d--;
      indent(f, d);
      fputs("}\n", f);
      if (red && i == rf.body_end) print_block_combine(k, &rf, f, d);
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
        else if (narrow16(k->bufs[s->buf].dtype))
          fprintf(f, "b%d[e%d] = %s(e%d);\n", s->buf, s->idx, narrow_fn(k->bufs[s->buf].dtype), s->val);
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
        "#define INFINITY __int_as_float(0x7f800000)\n"
        "// 16-bit floats: stored in 16 bits, computed on as float32; rounded to nearest even\n"
        "__device__ __forceinline__ float dferc_bf16_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }\n"
        "__device__ __forceinline__ unsigned short dferc_f32_bf16(float x) {\n"
        "  unsigned u = __float_as_uint(x);\n"
        "  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);\n"
        "  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);\n"
        "}\n"
        "#ifdef DFERC_HOST\n"
        "__device__ __forceinline__ float dferc_f16_f32(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }\n"
        "__device__ __forceinline__ unsigned short dferc_f32_f16(float x) { _Float16 y = (_Float16)x; unsigned short h; memcpy(&h, &y, 2); return h; }\n"
        "#else\n"
        "__device__ __forceinline__ float dferc_f16_f32(unsigned short h) { float x; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(x) : \"h\"(h)); return x; }\n"
        "__device__ __forceinline__ unsigned short dferc_f32_f16(float x) { unsigned short h; asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(x)); return h; }\n"
        "#endif\n\n", f);
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

/* ------------------------------------------------------------ library steps */

/* What the library kernels share: the first-failure record and the
** counter-based generator of compiler/crng.h, printed as CUDA C. */
static const char lib_prelude[] =
    "// library steps\n"
    "__device__ void dferc_fail(long long *st, long long code, long long step, long long a, long long b,\n"
    "                           long long c, long long d) {\n"
    "  if (atomicCAS((unsigned long long *)st, 0ULL, (unsigned long long)code) == 0ULL) {\n"
    "    st[1] = step; st[2] = a; st[3] = b; st[4] = c; st[5] = d;\n"
    "  }\n"
    "}\n"
    "__device__ unsigned long long dferc_mix(unsigned long long z) {\n"
    "  z += 0x9e3779b97f4a7c15ULL;\n"
    "  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;\n"
    "  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;\n"
    "  return z ^ (z >> 31);\n"
    "}\n\n";

static int lib_dtype_ok(df_dtype t) { return t == DF_F32 || t == DF_F64; }

int df_cuda_lib_parts(const df_schedule *s, int step) {
  df_op op = df_graph_node(s->g, s->steps[step].node)->op;
  return op == DF_OP_ATTENTION_GRAD || op == DF_OP_RECON_LOSS ? 2 : 1;
}

void df_cuda_lib_symbol(const df_schedule *s, int step, int part, char *buf, size_t n) {
  const df_node *nd = df_graph_node(s->g, s->steps[step].node);
  if (df_cuda_lib_parts(s, step) > 1) snprintf(buf, n, "dferc_step%d_%s_%d", step, df_op_name(nd->op), part);
  else snprintf(buf, n, "dferc_step%d_%s", step, df_op_name(nd->op));
}


/* The product of the leading `nd` dims. */
static int64_t lead(const int64_t *shape, int nd) {
  int64_t p = 1;
  for (int i = 0; i < nd; i++) p *= shape[i];
  return p;
}

/* attention's sizes: batch items, N, M, d */
static void att_dims(const df_schedule *s, const df_node *nd, int64_t *nb, int64_t *N, int64_t *M, int64_t *d) {
  const df_node *q = df_graph_node(s->g, nd->inputs[0]), *k = df_graph_node(s->g, nd->inputs[1]);
  int r = q->ndim;
  *nb = lead(q->shape, r - 2);
  *N = q->shape[r - 2];
  *M = k->shape[r - 2];
  *d = q->shape[r - 1];
}

size_t df_cuda_lib_scratch(const df_schedule *s, int step) {
  const df_node *nd = df_graph_node(s->g, s->steps[step].node);
  if (nd->op == DF_OP_RECON_LOSS) { /* one partial sum per masked token */
    const df_node *pred = df_graph_node(s->g, nd->inputs[0]);
    return (size_t)(pred->shape[0] * pred->shape[1]) * sizeof(double);
  }
  if (nd->op != DF_OP_ATTENTION_GRAD) return 0;
  int64_t nb, N, M, d;
  att_dims(s, nd, &nb, &N, &M, &d);
  return (size_t)(nb * N) * 2 * sizeof(double);
}

int64_t df_cuda_lib_threads(const df_schedule *s, int step, int part) {
  const df_node *nd = df_graph_node(s->g, s->steps[step].node);
  int64_t nb, N, M, d;
  switch (nd->op) {
  case DF_OP_ATTENTION:
  case DF_OP_ATTENTION_GRAD:
    att_dims(s, nd, &nb, &N, &M, &d);
    return nb * (part ? M : N);
  case DF_OP_RECON_LOSS:
  case DF_OP_RECON_LOSS_GRAD: { /* a thread per masked token; the loss's sum: one */
    const df_node *pred = df_graph_node(s->g, nd->inputs[0]);
    return nd->op == DF_OP_RECON_LOSS && part ? 1 : pred->shape[0] * pred->shape[1];
  }
  case DF_OP_MASK_INDEX: return nd->shape[0];
  case DF_OP_SCATTER_ADD: {
    int ax = (int)nd->attrs.ia[0]; /* one thread per output column (q', s) */
    int64_t S = 1;
    for (int i = ax + 1; i < nd->ndim; i++) S *= nd->shape[i];
    return lead(nd->shape, ax) * S;
  }
  default: return df_shape_numel(nd->ndim, nd->shape);
  }
}

static int lib_unsupported(const df_node *nd, df_dtype t, df_err *err) {
  return df_err_set(err, DF_EUNSUPPORTED, "%s:%d: %s: cuda has no kernel for dtype %s", nd->file, nd->line,
                    df_op_name(nd->op), df_dtype_lname(t));
}

/*
** attention(q, k, v) [nb, N, d]: one thread per query row, one pass over
** the keys with an online softmax (running max and sum, the output rows
** rescaled when the max grows), in float64 as the reference.
** attention_grad: part 0, one thread per query row: its log-sum-exp and
** D = sum_j P_ij (do_i . v_j) (= do_i . o_i; from the recomputed P, as the
** cpu device) into scratch, then dq; part 1, one thread per key row: dk
** and dv from the stored statistics.  No atomics, no N x M matrix.
*/
static int print_attention(const df_schedule *s, int step, const df_node *nd, FILE *f) {
  int64_t nb, N, M, d;
  att_dims(s, nd, &nb, &N, &M, &d);
  const char *T = ctype(nd->dtype);
  double scale = nd->attrs.fa[0];
  char sym[96];
  if (nd->op == DF_OP_ATTENTION) {
    df_cuda_lib_symbol(s, step, 0, sym, sizeof sym);
    fprintf(f,
            "extern \"C\" __global__ void %s(const %s *__restrict__ q, const %s *__restrict__ k,\n"
            "    const %s *__restrict__ v, %s *__restrict__ y, long long *status, double *scratch) {\n"
            "  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "  if (t >= %" PRId64 "LL) return;\n"
            "  const long long b = t / %" PRId64 "LL;\n"
            "  const %s *qi = q + t * %" PRId64 "LL, *kb = k + b * %" PRId64 "LL, *vb = v + b * %" PRId64 "LL;\n"
            "  double acc[%" PRId64 "], m = -(double)INFINITY, l = 0;\n"
            "  for (int c = 0; c < %" PRId64 "; c++) acc[c] = 0;\n"
            "  for (long long j = 0; j < %" PRId64 "LL; j++) {\n"
            "    double a = 0;\n"
            "    for (int c = 0; c < %" PRId64 "; c++) a += (double)qi[c] * (double)kb[j * %" PRId64 "LL + c];\n"
            "    a *= %.17g;\n"
            "    if (a > m) {\n"
            "      const double r = exp(m - a);\n"
            "      l *= r;\n"
            "      for (int c = 0; c < %" PRId64 "; c++) acc[c] *= r;\n"
            "      m = a;\n"
            "    }\n"
            "    const double p = exp(a - m);\n"
            "    l += p;\n"
            "    for (int c = 0; c < %" PRId64 "; c++) acc[c] += p * (double)vb[j * %" PRId64 "LL + c];\n"
            "  }\n"
            "  for (int c = 0; c < %" PRId64 "; c++) y[t * %" PRId64 "LL + c] = (%s)(l > 0 ? acc[c] / l : 0.0);\n"
            "}\n\n",
            sym, T, T, T, T, nb * N, N, T, d, M * d, M * d, d, d, M, d, d, scale, d, d, d, d, d, T);
    return 0;
  }
  /* part 0: per query row */
  df_cuda_lib_symbol(s, step, 0, sym, sizeof sym);
  int64_t R = N + 2 * M; /* rows of the packed result per batch item */
  fprintf(f,
          "extern \"C\" __global__ void %s(const %s *__restrict__ q, const %s *__restrict__ k,\n"
          "    const %s *__restrict__ v, const %s *__restrict__ o, const %s *__restrict__ go, %s *__restrict__ y,\n"
          "    long long *status, double *scratch) {\n"
          "  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
          "  if (t >= %" PRId64 "LL) return;\n"
          "  const long long b = t / %" PRId64 "LL, i = t %% %" PRId64 "LL;\n"
          "  const %s *qi = q + t * %" PRId64 "LL, *gi = go + t * %" PRId64 "LL, *oi = o + t * %" PRId64 "LL;\n"
          "  const %s *kb = k + b * %" PRId64 "LL, *vb = v + b * %" PRId64 "LL;\n"
          "  double m = -(double)INFINITY, l = 0, D = 0, dq[%" PRId64 "];\n"
          "  for (long long j = 0; j < %" PRId64 "LL; j++) {\n"
          "    double a = 0, g = 0;\n"
          "    for (int c = 0; c < %" PRId64 "; c++) {\n"
          "      a += (double)qi[c] * (double)kb[j * %" PRId64 "LL + c];\n"
          "      g += (double)gi[c] * (double)vb[j * %" PRId64 "LL + c];\n"
          "    }\n"
          "    a *= %.17g;\n"
          "    if (a > m) { const double r = exp(m - a); l *= r; D *= r; m = a; }\n"
          "    const double p = exp(a - m);\n"
          "    l += p;\n"
          "    D += p * g;\n"
          "  }\n"
          "  /* D = sum_j P_ij (do_i . v_j), from the recomputed P (= do_i . o_i) */\n"
          "  const double lse = m + log(l);\n"
          "  D = l > 0 ? D / l : 0.0;\n"
          "  (void)oi;\n"
          "  for (int c = 0; c < %" PRId64 "; c++) dq[c] = 0;\n"
          "  scratch[2 * t] = lse;\n"
          "  scratch[2 * t + 1] = D;\n"
          "  for (long long j = 0; j < %" PRId64 "LL; j++) {\n"
          "    double a = 0, g = 0;\n"
          "    for (int c = 0; c < %" PRId64 "; c++) {\n"
          "      a += (double)qi[c] * (double)kb[j * %" PRId64 "LL + c];\n"
          "      g += (double)gi[c] * (double)vb[j * %" PRId64 "LL + c];\n"
          "    }\n"
          "    const double p = exp(a * %.17g - lse), ds = p * (g - D) * %.17g;\n"
          "    for (int c = 0; c < %" PRId64 "; c++) dq[c] += ds * (double)kb[j * %" PRId64 "LL + c];\n"
          "  }\n"
          "  %s *yq = y + (b * %" PRId64 "LL + i) * %" PRId64 "LL;\n"
          "  for (int c = 0; c < %" PRId64 "; c++) yq[c] = (%s)dq[c];\n"
          "}\n\n",
          sym, T, T, T, T, T, T, nb * N, N, N, T, d, d, d, T, M * d, M * d, d, M, d, d, d, scale, d, M, d, d, d,
          scale, scale, d, d, T, R, d, d, T);
  /* part 1: per key row */
  df_cuda_lib_symbol(s, step, 1, sym, sizeof sym);
  fprintf(f,
          "extern \"C\" __global__ void %s(const %s *__restrict__ q, const %s *__restrict__ k,\n"
          "    const %s *__restrict__ v, const %s *__restrict__ o, const %s *__restrict__ go, %s *__restrict__ y,\n"
          "    long long *status, double *scratch) {\n"
          "  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
          "  if (t >= %" PRId64 "LL) return;\n"
          "  const long long b = t / %" PRId64 "LL, j = t %% %" PRId64 "LL;\n"
          "  const %s *kj = k + t * %" PRId64 "LL, *vj = v + t * %" PRId64 "LL;\n"
          "  const %s *qb = q + b * %" PRId64 "LL, *gb = go + b * %" PRId64 "LL;\n"
          "  const double *st = scratch + 2 * b * %" PRId64 "LL;\n"
          "  double dk[%" PRId64 "], dv[%" PRId64 "];\n"
          "  for (int c = 0; c < %" PRId64 "; c++) dk[c] = dv[c] = 0;\n"
          "  for (long long i = 0; i < %" PRId64 "LL; i++) {\n"
          "    double a = 0, g = 0;\n"
          "    for (int c = 0; c < %" PRId64 "; c++) {\n"
          "      a += (double)qb[i * %" PRId64 "LL + c] * (double)kj[c];\n"
          "      g += (double)gb[i * %" PRId64 "LL + c] * (double)vj[c];\n"
          "    }\n"
          "    const double p = exp(a * %.17g - st[2 * i]), ds = p * (g - st[2 * i + 1]) * %.17g;\n"
          "    for (int c = 0; c < %" PRId64 "; c++) {\n"
          "      dv[c] += p * (double)gb[i * %" PRId64 "LL + c];\n"
          "      dk[c] += ds * (double)qb[i * %" PRId64 "LL + c];\n"
          "    }\n"
          "  }\n"
          "  %s *yk = y + (b * %" PRId64 "LL + %" PRId64 "LL + j) * %" PRId64 "LL;\n"
          "  %s *yv = y + (b * %" PRId64 "LL + %" PRId64 "LL + j) * %" PRId64 "LL;\n"
          "  for (int c = 0; c < %" PRId64 "; c++) { yk[c] = (%s)dk[c]; yv[c] = (%s)dv[c]; }\n"
          "}\n\n",
          sym, T, T, T, T, T, T, nb * M, M, M, T, d, d, T, N * d, N * d, N, d, d, d, N, d, d, d, scale, scale, d, d,
          d, T, R, N, d, T, R, N + M, d, d, T, T);
  return 0;
}

/* recon_loss's per-token body: mu, sd and the walk over the row; `elem`
** is the statement run for each (j, d = pred - target). */
static void print_recon_token(FILE *f, const df_node *nd, const df_node *pred, const df_node *pix, int step,
                              const char *on_bad, const char *elem) {
  int64_t M = pred->shape[1], P = pred->shape[2];
  int64_t C = pix->shape[1], T = pix->shape[2], H = pix->shape[3], W = pix->shape[4];
  int64_t tub = nd->attrs.ia[0], pat = nd->attrs.ia[1], nh = H / pat, nw = W / pat, N = T / tub * nh * nw;
  const char *Ty = ctype(nd->dtype);
  fprintf(f,
          "  const long long b = r / %" PRId64 "LL, tok = idx[r];\n"
          "  if (tok < 0 || tok >= %" PRId64 "LL) {\n"
          "    dferc_fail(status, %d, %d, tok, %" PRId64 "LL, 0, 0);\n"
          "%s"
          "    return;\n"
          "  }\n",
          M, N, DF_CUDA_ST_INDEX, step, N, on_bad);
  fprintf(f,
          "  const long long t0 = tok / %" PRId64 "LL * %" PRId64 "LL, y0 = tok / %" PRId64 "LL %% %" PRId64
          "LL * %" PRId64 "LL, x0 = tok %% %" PRId64 "LL * %" PRId64 "LL;\n",
          nh * nw, tub, nw, nh, pat, nw, pat);
  fprintf(f,
          "  const %s *base = pix + b * %" PRId64 "LL;\n"
          "  double mu[%" PRId64 "], sd[%" PRId64 "];\n"
          "  for (int c = 0; c < %" PRId64 "; c++) {\n"
          "    const %s *pl = base + c * %" PRId64 "LL;\n"
          "    double sum = 0, ss = 0;\n",
          Ty, C * T * H * W, C > 0 ? C : 1, C > 0 ? C : 1, C, Ty, T * H * W);
  for (int pass = 0; pass < 2; pass++) {
    fprintf(f,
            "    for (int f = 0; f < %" PRId64 "; f++)\n"
            "      for (int yy = 0; yy < %" PRId64 "; yy++)\n"
            "        for (int xx = 0; xx < %" PRId64 "; xx++) {\n"
            "          const double v = (double)pl[((t0 + f) * %" PRId64 "LL + y0 + yy) * %" PRId64 "LL + x0 + xx];\n"
            "%s"
            "        }\n",
            tub, pat, pat, H, W, pass ? "          ss += (v - m) * (v - m);\n" : "          sum += v;\n");
    if (!pass) fprintf(f, "    const double m = sum / %" PRId64 ".0;\n", tub * pat * pat);
  }
  fprintf(f,
          "    mu[c] = m;\n"
          "    sd[c] = sqrt(ss / %" PRId64 ".0) + %.17g;\n"
          "  }\n"
          "  const %s *p = pred + r * %" PRId64 "LL;\n"
          "  double acc = 0;\n"
          "  for (int f = 0; f < %" PRId64 "; f++)\n"
          "    for (int yy = 0; yy < %" PRId64 "; yy++)\n"
          "      for (int xx = 0; xx < %" PRId64 "; xx++)\n"
          "        for (int c = 0; c < %" PRId64 "; c++) {\n"
          "          const %s *q = base + c * %" PRId64 "LL + ((t0 + f) * %" PRId64 "LL + y0 + yy) * %" PRId64
          "LL + x0 + xx;\n"
          "          double v = ((double)q[0] - mu[c]) / sd[c];\n"
          "          if (f > 0) v -= ((double)q[-%" PRId64 "LL] - mu[c]) / sd[c];\n"
          "          const long long j = ((f * %" PRId64 "LL + yy) * %" PRId64 "LL + xx) * %" PRId64 "LL + c;\n"
          "          const double d = (double)p[j] - v;\n"
          "%s"
          "        }\n",
          tub * pat * pat - 1, nd->attrs.fa[0], Ty, P, tub, pat, pat, C, Ty, T * H * W, H, W, H * W, pat, pat, C, elem);
}

/*
** recon_loss / recon_loss_grad (ops/recon.c): one thread per masked token
** computes its tubelet's per-channel mean and unbiased std (float64), then
** walks its prediction row forming each target value from the pixels.
** The loss: part 0 writes each token's squared error to scratch, part 1
** (one thread) sums them in token order, so the result does not depend on
** the launch; the gradient: one part, gy * 2 (pred - target) / (B M P).
*/
static int print_recon(const df_schedule *s, int step, const df_node *nd, FILE *f) {
  const df_node *pred = df_graph_node(s->g, nd->inputs[0]), *pix = df_graph_node(s->g, nd->inputs[1]);
  int64_t rows = pred->shape[0] * pred->shape[1];
  double scale = 1.0 / (double)(rows * pred->shape[2]);
  const char *Ty = ctype(nd->dtype);
  char sym[96], elem[160];
  df_cuda_lib_symbol(s, step, 0, sym, sizeof sym);
  if (nd->op == DF_OP_RECON_LOSS_GRAD) {
    fprintf(f,
            "extern \"C\" __global__ void %s(const %s *__restrict__ pred, const %s *__restrict__ pix,\n"
            "    const long long *__restrict__ idx, const %s *__restrict__ gy, %s *__restrict__ y, long long *status,\n"
            "    double *scratch) {\n"
            "  const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "  if (r >= %" PRId64 "LL) return;\n"
            "  const double g = (double)gy[0] * 2.0 * %.17g;\n",
            sym, Ty, Ty, Ty, Ty, rows, scale);
    snprintf(elem, sizeof elem, "          y[r * %" PRId64 "LL + j] = (%s)(g * d);\n", pred->shape[2], Ty);
    print_recon_token(f, nd, pred, pix, step, "", elem);
    fprintf(f, "  (void)acc;\n}\n\n");
    return 0;
  }
  /* part 0: per token, its squared error into scratch */
  fprintf(f,
          "extern \"C\" __global__ void %s(const %s *__restrict__ pred, const %s *__restrict__ pix,\n"
          "    const long long *__restrict__ idx, %s *__restrict__ y, long long *status, double *scratch) {\n"
          "  const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
          "  if (r >= %" PRId64 "LL) return;\n",
          sym, Ty, Ty, Ty, rows);
  print_recon_token(f, nd, pred, pix, step, "    scratch[r] = 0;\n", "          acc += d * d;\n");
  fprintf(f, "  scratch[r] = acc;\n}\n\n");
  /* part 1: one thread sums them in token order */
  df_cuda_lib_symbol(s, step, 1, sym, sizeof sym);
  fprintf(f,
          "extern \"C\" __global__ void %s(const %s *__restrict__ pred, const %s *__restrict__ pix,\n"
          "    const long long *__restrict__ idx, %s *__restrict__ y, long long *status, double *scratch) {\n"
          "  if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;\n"
          "  double acc = 0;\n"
          "  for (long long r = 0; r < %" PRId64 "LL; r++) acc += scratch[r];\n"
          "  y[0] = (%s)(acc * %.17g);\n"
          "}\n\n",
          sym, Ty, Ty, Ty, rows, Ty, scale);
  return 0;
}

int df_cuda_print_lib(const df_schedule *s, int step, FILE *f, df_err *err) {
  const df_step *st = &s->steps[step];
  const df_node *nd = df_graph_node(s->g, st->node);
  const df_node *in0 = df_graph_node(s->g, nd->inputs[0]);
  char sym[96];
  df_cuda_lib_symbol(s, step, 0, sym, sizeof sym);
  fprintf(f, "// %s:%d %s\n", nd->file, nd->line, df_op_name(nd->op));
  switch (nd->op) {
  case DF_OP_RAND: {
    /* y[i] = u01(seed, salt, i); the seed read as the reference reads it
    ** (through a double) */
    if (!lib_dtype_ok(nd->dtype)) return lib_unsupported(nd, nd->dtype, err);
    const char *T = ctype(nd->dtype);
    fprintf(f,
            "extern \"C\" __global__ void %s(const %s *__restrict__ seed, %s *__restrict__ y, long long *status, double *scratch) {\n"
            "  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "  if (i >= %" PRId64 "LL) return;\n"
            "  const unsigned long long k = (unsigned long long)(long long)(double)seed[0];\n"
            "  const unsigned long long z = dferc_mix(k ^ dferc_mix((%" PRIu64 "ULL << 40) ^ (unsigned long long)i));\n"
            "  y[i] = (%s)((double)(z >> 40) * (1.0 / 16777216.0));\n"
            "}\n\n",
            sym, ctype(in0->dtype), T, df_shape_numel(nd->ndim, nd->shape), (uint64_t)nd->attrs.ia[0], T);
    return 0;
  }
  case DF_OP_MASK_INDEX: {
    /* one thread per row: the positions of the selected value, in order */
    const int64_t *ia = nd->attrs.ia;
    int64_t B = in0->shape[0], N = in0->shape[1], M = ia[1];
    fprintf(f,
            "extern \"C\" __global__ void %s(const unsigned char *__restrict__ m, long long *__restrict__ y, long long *status,\n"
            "    double *scratch) {\n"
            "  const long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "  if (b >= %" PRId64 "LL) return;\n"
            "  const unsigned char *r = m + b * %" PRId64 "LL;\n"
            "  long long c = 0;\n"
            "  for (long long i = 0; i < %" PRId64 "LL; i++)\n"
            "    if ((r[i] != 0) == %d) {\n"
            "      if (c < %" PRId64 "LL) y[b * %" PRId64 "LL + c] = i;\n"
            "      c++;\n"
            "    }\n"
            "  if (c != %" PRId64 "LL) {\n"
            "    for (long long j = c; j < %" PRId64 "LL; j++) y[b * %" PRId64 "LL + j] = 0;\n"
            "    dferc_fail(status, %d, %d, b, c, 0, 0);\n"
            "    return;\n"
            "  }\n",
            sym, B, N, N, ia[0] != 0, M, M, M, M, M, DF_CUDA_ST_MASK_COUNT, step);
    if (ia[2] > 0) {
      int64_t t = ia[2], h = ia[3], w = ia[4], rh = ia[5], rw = ia[6];
      int64_t k = M / (t * (h / rh) * (w / rw));
      fprintf(f,
              "  for (long long fr = 0; fr < %" PRId64 "LL; fr++)\n"
              "    for (long long wy = 0; wy < %" PRId64 "LL; wy++)\n"
              "      for (long long wx = 0; wx < %" PRId64 "LL; wx++) {\n"
              "        long long cnt = 0;\n"
              "        for (long long yy = wy * %" PRId64 "LL; yy < (wy + 1) * %" PRId64 "LL; yy++)\n"
              "          for (long long xx = wx * %" PRId64 "LL; xx < (wx + 1) * %" PRId64 "LL; xx++)\n"
              "            cnt += (r[(fr * %" PRId64 "LL + yy) * %" PRId64 "LL + xx] != 0) == %d;\n"
              "        if (cnt != %" PRId64 "LL) {\n"
              "          dferc_fail(status, %d, %d, b, fr, wy, wx * 4294967296LL + cnt);\n"
              "          return;\n"
              "        }\n"
              "      }\n",
              t, h / rh, w / rw, rh, rh, rw, rw, h, w, ia[0] != 0, k, DF_CUDA_ST_MASK_REGION, step);
    }
    fputs("}\n\n", f);
    return 0;
  }
  case DF_OP_SCATTER_ADD: {
    /* out[q', idx[q, m], s] += src[q, m, s]: one thread per output column
    ** (q', s) zeroes it and adds its contributions in the reference's
    ** order (q, then m); no atomics, so runs repeat bit for bit */
    const df_node *src = df_graph_node(s->g, nd->inputs[1]);
    if (!lib_dtype_ok(nd->dtype)) return lib_unsupported(nd, nd->dtype, err);
    if (in0->dtype != DF_I64 && in0->dtype != DF_I32) return lib_unsupported(nd, in0->dtype, err);
    int ax = (int)nd->attrs.ia[0];
    int64_t S = 1, No = nd->shape[ax], M = src->shape[ax];
    for (int i = ax + 1; i < nd->ndim; i++) S *= nd->shape[i];
    int64_t Q = lead(src->shape, ax), Qo = lead(nd->shape, ax);
    const char *T = ctype(nd->dtype);
    fprintf(f,
            "extern \"C\" __global__ void %s(const %s *__restrict__ idx, const %s *__restrict__ src, %s *__restrict__ y,\n"
            "    long long *status, double *scratch) {\n"
            "  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            "  if (t >= %" PRId64 "LL) return;\n"
            "  const long long qo = t / %" PRId64 "LL, s = t %% %" PRId64 "LL;\n"
            "  %s *col = y + qo * %" PRId64 "LL + s;\n"
            "  for (long long p = 0; p < %" PRId64 "LL; p++) col[p * %" PRId64 "LL] = (%s)0;\n"
            "  for (long long q = 0; q < %" PRId64 "LL; q++) {\n"
            "    long long rest = q, o = 0;\n",
            sym, ctype(in0->dtype), T, T, Qo * S, S, S, T, No * S, No, S, T, Q);
    /* q's output row: its index with the result's size-1 dims pinned */
    int64_t stride = 1;
    int64_t os[DF_MAX_DIMS];
    for (int d = ax - 1; d >= 0; d--) {
      os[d] = nd->shape[d] == 1 ? 0 : stride;
      stride *= nd->shape[d];
    }
    for (int d = ax - 1; d >= 0; d--)
      fprintf(f, "    o += (rest %% %" PRId64 "LL) * %" PRId64 "LL; rest /= %" PRId64 "LL;\n", src->shape[d], os[d],
              src->shape[d]);
    fprintf(f,
            "    if (o != qo) continue;\n"
            "    for (long long m = 0; m < %" PRId64 "LL; m++) {\n"
            "      const long long p = (long long)idx[q * %" PRId64 "LL + m];\n"
            "      if (p < 0 || p >= %" PRId64 "LL) {\n"
            "        dferc_fail(status, %d, %d, p, %" PRId64 "LL, 0, 0);\n"
            "        continue;\n"
            "      }\n"
            "      col[p * %" PRId64 "LL] += src[(q * %" PRId64 "LL + m) * %" PRId64 "LL + s];\n"
            "    }\n"
            "  }\n"
            "}\n\n",
            M, M, No, DF_CUDA_ST_INDEX, step, No, S, M, S);
    return 0;
  }
  case DF_OP_ATTENTION:
  case DF_OP_ATTENTION_GRAD:
    if (!lib_dtype_ok(nd->dtype)) return lib_unsupported(nd, nd->dtype, err);
    return print_attention(s, step, nd, f);
  case DF_OP_RECON_LOSS:
  case DF_OP_RECON_LOSS_GRAD:
    if (!lib_dtype_ok(nd->dtype)) return lib_unsupported(nd, nd->dtype, err);
    return print_recon(s, step, nd, f);
  default:
    return df_err_set(err, DF_EUNSUPPORTED, "%s:%d: %s: cuda has no library kernel for it", nd->file, nd->line,
                      df_op_name(nd->op));
  }
}

int df_cuda_status_message(const df_schedule *s, const long long *st, df_err *err) {
  int step = (int)st[1];
  if (step < 0 || step >= s->nsteps)
    return df_err_set(err, DF_ERUNTIME, "cuda: a library kernel failed (code %lld)", st[0]);
  const df_node *n = df_graph_node(s->g, s->steps[step].node);
  const int64_t *ia = n->attrs.ia;
  const char *what = ia[0] != 0 ? "masked" : "visible";
  char msg[512];
  switch (st[0]) {
  case DF_CUDA_ST_MASK_COUNT:
    snprintf(msg, sizeof msg, "mask row %lld has %lld %s tokens, the graph was built for %lld", st[2], st[3],
             what, (long long)ia[1]);
    break;
  case DF_CUDA_ST_MASK_REGION: {
    int64_t t = ia[2], h = ia[3], w = ia[4], rh = ia[5], rw = ia[6];
    int64_t k = t > 0 ? ia[1] / (t * (h / rh) * (w / rw)) : 0;
    snprintf(msg, sizeof msg,
             "mask row %lld: frame %lld, window (%lld, %lld) has %lld %s tokens but an LGI encoder needs %lld "
             "in every %lldx%lld window of every frame (use a part-window mask whose window is the region's "
             "spatial size)",
             st[2], st[3], st[4], st[5] >> 32, st[5] & 0xffffffffLL, what, (long long)k, (long long)rh,
             (long long)rw);
    break;
  }
  case DF_CUDA_ST_INDEX:
    snprintf(msg, sizeof msg, "index %lld out of range [0, %lld)", st[2], st[3]);
    break;
  default: snprintf(msg, sizeof msg, "failed (code %lld)", st[0]); break;
  }
  return df_err_set(err, DF_ERUNTIME, "%s:%d: %s: %s", n->file, n->line, df_op_name(n->op), msg);
}

char *df_cuda_schedule_source(const df_schedule *s, df_err *err) {
  kir_kernel **ks = malloc((size_t)(s->nsteps + 1) * sizeof *ks);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = ks ? open_memstream(&buf, &len) : NULL;
  if (!f) {
    free(ks);
    df_err_set(err, DF_ENOMEM, "cuda: out of memory");
    return NULL;
  }
  int nk = 0, nlib = 0, rc = 0;
  for (int i = 0; i < s->nsteps; i++) {
    if (s->steps[i].kind == DF_STEP_KERNEL) ks[nk++] = s->steps[i].kernel;
    if (s->steps[i].kind == DF_STEP_LIB) nlib++;
  }
  df_cuda_print(ks, nk, f);
  if (nlib) fputs(lib_prelude, f);
  for (int i = 0; i < s->nsteps && rc == 0; i++)
    if (s->steps[i].kind == DF_STEP_LIB) rc = df_cuda_print_lib(s, i, f, err);
  fclose(f);
  free(ks);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

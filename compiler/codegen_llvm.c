/*
** codegen_llvm.c -- see codegen_llvm.h.
**
** Loops become header/body/latch blocks with the loop variable in an
** alloca (mem2reg turns it into a phi); expressions are evaluated where a
** statement uses them (GVN and LICM hoist what is invariant); the O3
** pipeline with the host's features vectorises the VECTOR loops (with
** AVX-512 when the CPU has it: by default functions prefer 512-bit
** vectors).  A tuning configuration (compiler/tune.h) sets the preferred
** vector width and the VECTOR loops' interleave and unroll counts; the
** tuner (tune_kernel) searches them per kernel, checking every candidate
** against compiler/kir_interp before timing it.
*/
#include "config.h"

#include "compiler/codegen_llvm.h"
#include "compiler/kir_interp.h"
#include "compiler/llvm_math.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if DFERC_HAVE_LLVM

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>
#include <pthread.h>

struct df_llvm_jit {
  LLVMOrcLLJITRef jit;
  int n;                  /* kernels compiled into it */
  uint64_t *hash;         /* their Kernel IR hashes */
  df_tune_config *cfg;    /* and the configuration each was compiled with */
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char target_desc[2048];
static char *host_features;

static void init_llvm(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
  host_features = LLVMGetHostCPUFeatures();
  char *cpu = LLVMGetHostCPUName();
  snprintf(target_desc, sizeof target_desc, "llvm %s; cpu %s; %s", LLVM_VERSION_STRING, cpu,
           host_features ? host_features : "");
  LLVMDisposeMessage(cpu);
}

int df_llvm_available(df_err *err) { return 1; }

const char *df_llvm_target_description(void) {
  pthread_once(&init_once, init_llvm);
  return target_desc;
}

int df_llvm_host_has(const char *feature) {
  pthread_once(&init_once, init_llvm);
  char want[64];
  snprintf(want, sizeof want, "+%s", feature);
  size_t n = strlen(want);
  for (const char *p = host_features; p && (p = strstr(p, want)); p += n)
    if (p[n] == ',' || p[n] == '\0') return 1;
  return 0;
}

/* A target machine for the host: generic x86-64 scheduling, the host's
** real features (LLVM 14 does not know every CPU by name). */
static LLVMTargetMachineRef host_tm(df_err *err) {
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef t;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
    df_err_set(err, DF_EUNSUPPORTED, "llvm: no target for %s: %s", triple, msg ? msg : "");
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(t, triple, "x86-64", host_features ? host_features : "",
                                                    LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                                    LLVMCodeModelJITDefault);
  LLVMDisposeMessage(triple);
  if (!tm) df_err_set(err, DF_EUNSUPPORTED, "llvm: cannot create a target machine");
  return tm;
}

static int llvm_error(df_err *err, LLVMErrorRef e, const char *what) {
  char *m = LLVMGetErrorMessage(e);
  df_err_set(err, DF_EUNSUPPORTED, "llvm: %s: %s", what, m);
  LLVMDisposeErrorMessage(m);
  return DF_EUNSUPPORTED;
}

/* ------------------------------------------------------------ kernel emission */

typedef struct emit {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  const kir_kernel *k;
  LLVMValueRef *bufs;     /* typed pointers */
  LLVMValueRef *vars;     /* allocas of loop variables */
  LLVMValueRef *tmps;     /* allocas of temporaries */
  LLVMValueRef *cache;    /* per statement */
  LLVMValueRef start, end;
} emit;

static LLVMTypeRef ty(emit *E, df_dtype t) {
  switch (t) {
  case DF_F64: return LLVMDoubleTypeInContext(E->ctx);
  case DF_F32: return LLVMFloatTypeInContext(E->ctx);
  case DF_F16: case DF_BF16: return LLVMInt16TypeInContext(E->ctx); /* storage only */
  case DF_I64: return LLVMInt64TypeInContext(E->ctx);
  case DF_I32: return LLVMInt32TypeInContext(E->ctx);
  case DF_U8: case DF_BOOL: return LLVMInt8TypeInContext(E->ctx);
  default: return LLVMInt64TypeInContext(E->ctx);
  }
}

/* The value type of an expression (bools are i1 in registers). */
static LLVMTypeRef vty(emit *E, df_dtype t) {
  if (t == DF_F16 || t == DF_BF16) return LLVMFloatTypeInContext(E->ctx); /* computed on as float32 */
  return t == DF_BOOL ? LLVMInt1TypeInContext(E->ctx) : ty(E, t);
}

static int narrow16(df_dtype t) { return t == DF_F16 || t == DF_BF16; }

static LLVMValueRef intrinsic(emit *E, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(E->mod, id, &t, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(E->ctx, id, &t, 1);
  return LLVMBuildCall2(E->b, fty, f, args, (unsigned)n, "");
}

/* A libm function of one argument (tanh, erf): float or double flavour. */
static LLVMValueRef libm1(emit *E, const char *name, LLVMTypeRef t, LLVMValueRef a) {
  char nm[32];
  int is_f = LLVMGetTypeKind(t) == LLVMFloatTypeKind;
  snprintf(nm, sizeof nm, "%s%s", name, is_f ? "f" : "");
  LLVMTypeRef fty = LLVMFunctionType(t, &t, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(E->mod, nm);
  if (!f) f = LLVMAddFunction(E->mod, nm, fty);
  return LLVMBuildCall2(E->b, fty, f, &a, 1, "");
}

static LLVMValueRef to_bool(emit *E, LLVMValueRef v, df_dtype t) {
  if (t == DF_BOOL) return v;
  if (df_dtype_is_float(t)) return LLVMBuildFCmp(E->b, LLVMRealUNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
  return LLVMBuildICmp(E->b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
}

static LLVMValueRef ex(emit *E, kir_e i);

static LLVMValueRef cast_value(emit *E, LLVMValueRef v, df_dtype from, df_dtype to) {
  if (from == to) return v;
  LLVMTypeRef tt = vty(E, to);
  int ff = df_dtype_is_float(from), tf = df_dtype_is_float(to);
  if (to == DF_BOOL) return to_bool(E, v, from);
  if (from == DF_BOOL) return tf ? LLVMBuildUIToFP(E->b, v, tt, "") : LLVMBuildZExt(E->b, v, tt, "");
  if (ff && tf) {
    unsigned a = LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMDoubleTypeKind ? 64 : 32, b2 = to == DF_F64 ? 64 : 32;
    LLVMValueRef r = a < b2 ? LLVMBuildFPExt(E->b, v, tt, "") : a > b2 ? LLVMBuildFPTrunc(E->b, v, tt, "") : v;
    /* to a 16-bit float: the value it can hold (ref rounds a cast the same way) */
    if (narrow16(to)) r = df_llvm_widen16(E->b, df_llvm_narrow16(E->b, r, to == DF_F16), to == DF_F16);
    return r;
  }
  if (ff) return LLVMBuildFPToSI(E->b, v, tt, "");
  if (tf) {
    LLVMValueRef r = from == DF_U8 ? LLVMBuildUIToFP(E->b, v, tt, "") : LLVMBuildSIToFP(E->b, v, tt, "");
    return narrow16(to) ? df_llvm_widen16(E->b, df_llvm_narrow16(E->b, r, to == DF_F16), to == DF_F16) : r;
  }
  return LLVMBuildIntCast2(E->b, v, tt, from != DF_U8, "");
}

static LLVMValueRef ex_uncached(emit *E, kir_e i) {
  const kir_expr *e = &E->k->exprs[i];
  LLVMBuilderRef b = E->b;
  switch (e->kind) {
  case KE_CONST:
    if (df_dtype_is_float(e->dtype)) return LLVMConstReal(vty(E, e->dtype), e->f);
    if (e->dtype == DF_BOOL) return LLVMConstInt(vty(E, e->dtype), e->i != 0, 0);
    return LLVMConstInt(vty(E, e->dtype), (unsigned long long)e->i, 1);
  case KE_VAR: return LLVMBuildLoad2(b, LLVMInt64TypeInContext(E->ctx), E->vars[e->a], "");
  case KE_TMP: return LLVMBuildLoad2(b, vty(E, e->dtype), E->tmps[e->a], "");
  case KE_LOAD: {
    df_dtype dt = E->k->bufs[e->a].dtype;
    LLVMValueRef idx = ex(E, e->b);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(b, ty(E, dt), E->bufs[e->a], &idx, 1, "");
    LLVMValueRef v = LLVMBuildLoad2(b, ty(E, dt), p, "");
    if (narrow16(dt)) return df_llvm_widen16(b, v, dt == DF_F16);
    return dt == DF_BOOL ? LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstNull(ty(E, dt)), "") : v;
  }
  case KE_UN: {
    LLVMValueRef a = ex(E, e->a);
    LLVMTypeRef t = LLVMTypeOf(a);
    int fl = df_dtype_is_float(e->dtype);
    switch (e->op) {
    case DF_OP_NEG: return fl ? LLVMBuildFNeg(b, a, "") : LLVMBuildNeg(b, a, "");
    case DF_OP_EXP: return df_llvm_exp(E->mod, b, a);
    case DF_OP_LOG: return intrinsic(E, "llvm.log", t, &a, 1);
    case DF_OP_SQRT: return intrinsic(E, "llvm.sqrt", t, &a, 1);
    case DF_OP_RSQRT: return LLVMBuildFDiv(b, LLVMConstReal(t, 1.0), intrinsic(E, "llvm.sqrt", t, &a, 1), "");
    case DF_OP_TANH: return libm1(E, "tanh", t, a);
    case DF_OP_ERF: {
      LLVMValueRef r = df_llvm_erf(E->mod, b, a);
      return r ? r : libm1(E, "erf", t, a);
    }
    case DF_OP_ABS:
      if (fl) return intrinsic(E, "llvm.fabs", t, &a, 1);
      return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, a, LLVMConstNull(t), ""), LLVMBuildNeg(b, a, ""), a, "");
    case DF_OP_RECIP: return LLVMBuildFDiv(b, LLVMConstReal(t, 1.0), a, "");
    default: return NULL;
    }
  }
  case KE_BIN: {
    df_dtype ot = E->k->exprs[e->a].dtype;
    LLVMValueRef a = ex(E, e->a), c = ex(E, e->b);
    int fl = df_dtype_is_float(ot);
    if (fl) {
      switch (e->op) {
      case DF_OP_ADD: return LLVMBuildFAdd(b, a, c, "");
      case DF_OP_SUB: return LLVMBuildFSub(b, a, c, "");
      case DF_OP_MUL: return LLVMBuildFMul(b, a, c, "");
      case DF_OP_DIV: return LLVMBuildFDiv(b, a, c, "");
      case DF_OP_MAX: case DF_OP_MIN: { /* as ref: NaN in a wins */
        LLVMValueRef pick = LLVMBuildFCmp(b, e->op == DF_OP_MAX ? LLVMRealUGT : LLVMRealULT, a, c, "");
        return LLVMBuildSelect(b, pick, a, c, "");
      }
      case DF_OP_POW: {
        LLVMValueRef args[2] = {a, c};
        return intrinsic(E, "llvm.pow", LLVMTypeOf(a), args, 2);
      }
      case DF_OP_EQ: return LLVMBuildFCmp(b, LLVMRealOEQ, a, c, "");
      case DF_OP_NE: return LLVMBuildFCmp(b, LLVMRealUNE, a, c, "");
      case DF_OP_LT: return LLVMBuildFCmp(b, LLVMRealOLT, a, c, "");
      case DF_OP_LE: return LLVMBuildFCmp(b, LLVMRealOLE, a, c, "");
      case DF_OP_GT: return LLVMBuildFCmp(b, LLVMRealOGT, a, c, "");
      case DF_OP_GE: return LLVMBuildFCmp(b, LLVMRealOGE, a, c, "");
      default: return NULL;
      }
    }
    int sg = ot != DF_U8 && ot != DF_BOOL;
    switch (e->op) {
    case DF_OP_ADD: return LLVMBuildAdd(b, a, c, "");
    case DF_OP_SUB: return LLVMBuildSub(b, a, c, "");
    case DF_OP_MUL: return LLVMBuildMul(b, a, c, "");
    case DF_OP_DIV: {
      /* truncating, and 0 for a zero divisor (as ref) */
      LLVMValueRef z = LLVMBuildICmp(b, LLVMIntEQ, c, LLVMConstNull(LLVMTypeOf(c)), "");
      LLVMValueRef safe = LLVMBuildSelect(b, z, LLVMConstInt(LLVMTypeOf(c), 1, 0), c, "");
      LLVMValueRef q = sg ? LLVMBuildSDiv(b, a, safe, "") : LLVMBuildUDiv(b, a, safe, "");
      return LLVMBuildSelect(b, z, LLVMConstNull(LLVMTypeOf(a)), q, "");
    }
    case DF_OP_MAX: return LLVMBuildSelect(b, LLVMBuildICmp(b, sg ? LLVMIntSGT : LLVMIntUGT, a, c, ""), a, c, "");
    case DF_OP_MIN: return LLVMBuildSelect(b, LLVMBuildICmp(b, sg ? LLVMIntSLT : LLVMIntULT, a, c, ""), a, c, "");
    case DF_OP_EQ: return LLVMBuildICmp(b, LLVMIntEQ, a, c, "");
    case DF_OP_NE: return LLVMBuildICmp(b, LLVMIntNE, a, c, "");
    case DF_OP_LT: return LLVMBuildICmp(b, sg ? LLVMIntSLT : LLVMIntULT, a, c, "");
    case DF_OP_LE: return LLVMBuildICmp(b, sg ? LLVMIntSLE : LLVMIntULE, a, c, "");
    case DF_OP_GT: return LLVMBuildICmp(b, sg ? LLVMIntSGT : LLVMIntUGT, a, c, "");
    case DF_OP_GE: return LLVMBuildICmp(b, sg ? LLVMIntSGE : LLVMIntUGE, a, c, "");
    default: return NULL;
    }
  }
  case KE_SELECT: {
    LLVMValueRef c = to_bool(E, ex(E, e->a), E->k->exprs[e->a].dtype);
    return LLVMBuildSelect(b, c, ex(E, e->b), ex(E, e->c), "");
  }
  case KE_CAST: return cast_value(E, ex(E, e->a), E->k->exprs[e->a].dtype, e->dtype);
  }
  return NULL;
}

static LLVMValueRef ex(emit *E, kir_e i) {
  if (!E->cache[i]) E->cache[i] = ex_uncached(E, i);
  return E->cache[i];
}

typedef struct loop_t {
  LLVMBasicBlockRef header, exit;
  int var, flags, first; /* first: the index of its KS_FOR */
} loop_t;

/* Whether statements [a, b) are an innermost loop body whose reductions are
** all sums (a max reduction does not vectorise without no-NaNs math, and
** forcing it would only make LLVM print a remark). */
static int sums_only(const kir_kernel *k, int a, int b) {
  int accs = 0;
  for (int i = a; i < b; i++) {
    const kir_stmt *s = &k->stmts[i];
    if (s->kind == KS_FOR || (s->kind == KS_ACC && s->op != DF_OP_ADD)) return 0;
    accs += s->kind == KS_ACC;
  }
  return accs == 1; /* several: a block of columns, vectorised across them (SLP), not along the loop */
}

/* Give a loop's back edge its llvm.loop metadata: vectorize.enable for a
** sum reduction (the vectoriser may then reorder a floating-point
** reduction into several partial sums, which it never does on its own
** without fast-math flags, that the C API of LLVM 14 cannot set), and the
** configuration's interleave and unroll counts for a VECTOR loop. */
static void loop_metadata(LLVMContextRef ctx, LLVMValueRef br, int vectorize, int interleave, int unroll) {
  LLVMMetadataRef ops[5];
  int n = 0;
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(ctx, NULL, 0);
  ops[n++] = tmp;
  LLVMTypeRef i1 = LLVMInt1TypeInContext(ctx), i32 = LLVMInt32TypeInContext(ctx);
  if (vectorize > 0) {
    LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(ctx, "llvm.loop.vectorize.enable", 26),
                             LLVMValueAsMetadata(LLVMConstInt(i1, 1, 0))};
    ops[n++] = LLVMMDNodeInContext2(ctx, kv, 2);
  } else if (vectorize < 0) { /* a SCALAR loop: neither vectorised nor unrolled */
    LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(ctx, "llvm.loop.vectorize.width", 25),
                             LLVMValueAsMetadata(LLVMConstInt(i32, 1, 0))};
    ops[n++] = LLVMMDNodeInContext2(ctx, kv, 2);
    LLVMMetadataRef un = LLVMMDStringInContext2(ctx, "llvm.loop.unroll.disable", 24);
    ops[n++] = LLVMMDNodeInContext2(ctx, &un, 1);
  }
  if (interleave > 0) {
    LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(ctx, "llvm.loop.interleave.count", 26),
                             LLVMValueAsMetadata(LLVMConstInt(i32, (unsigned long long)interleave, 0))};
    ops[n++] = LLVMMDNodeInContext2(ctx, kv, 2);
  }
  if (unroll > 0) {
    LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(ctx, "llvm.loop.unroll.count", 22),
                             LLVMValueAsMetadata(LLVMConstInt(i32, (unsigned long long)unroll, 0))};
    ops[n++] = LLVMMDNodeInContext2(ctx, kv, 2);
  }
  if (n == 1) {
    LLVMDisposeTemporaryMDNode(tmp);
    return;
  }
  LLVMMetadataRef id = LLVMMDNodeInContext2(ctx, ops, (size_t)n);
  LLVMMetadataReplaceAllUsesWith(tmp, id); /* the loop id refers to itself */
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(ctx, "llvm.loop", 9), LLVMMetadataAsValue(ctx, id));
}

/* Emit one kernel as NAME_body(noalias typed pointers..., start, end) and
** the entry NAME(void **bufs, start, end). */
/* An intrinsic overloaded on two types (masked loads and stores). */
static LLVMValueRef intrinsic2(emit *E, const char *name, LLVMTypeRef t0, LLVMTypeRef t1, LLVMValueRef *args,
                               int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef ts[2] = {t0, t1};
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(E->mod, id, ts, 2);
  LLVMTypeRef fty = LLVMIntrinsicGetType(E->ctx, id, ts, 2);
  return LLVMBuildCall2(E->b, fty, f, args, (unsigned)n, "");
}

/* v in every lane of a vector of n. */
static LLVMValueRef splat(LLVMBuilderRef b, unsigned n, LLVMValueRef v) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), n);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(LLVMGetTypeContext(vt));
  LLVMValueRef one = LLVMBuildInsertElement(b, LLVMGetUndef(vt), v, LLVMConstInt(i32, 0, 0), "");
  return LLVMBuildShuffleVector(b, one, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(i32, n)), "");
}

/* TILE_DOT (kir.h) as a register tile: mr x ceil(nr/16) vectors of 16
** floats, a loop over the depth broadcasting one A element per row and
** loading nr B elements per step (nr a multiple of 16), fused
** multiply-adds, then masked stores of the n_valid columns. */
#define TILE_W 16
#define TILE_MAX_REGS 64
static int emit_tile_dot(emit *E, const kir_tile *t, df_err *err) {
  LLVMContextRef ctx = E->ctx;
  LLVMBuilderRef b = E->b;
  int pairs = t->kind == KT_BF16_PAIRS;
  if (pairs && !df_llvm_host_has("avx512bf16"))
    return df_err_set(err, DF_EUNSUPPORTED, "llvm: %s: this CPU has no AVX512-BF16 dot products", E->k->name);
  if (t->nr % TILE_W || t->mr * (t->nr / TILE_W) > TILE_MAX_REGS)
    return df_err_set(err, DF_EUNSUPPORTED, "llvm: %s: a %lldx%lld TILE_DOT (nr a multiple of %d, at most %d vectors)",
                      E->k->name, (long long)t->mr, (long long)t->nr, TILE_W, TILE_MAX_REGS);
  int mr = (int)t->mr, nv = (int)(t->nr / TILE_W);
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx), i32 = LLVMInt32TypeInContext(ctx);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx), v16 = LLVMVectorType(f32, TILE_W);
  LLVMTypeRef pv16 = LLVMPointerType(v16, 0);
  LLVMTypeRef vi32 = LLVMVectorType(i32, TILE_W), pvi32 = LLVMPointerType(vi32, 0);
  LLVMTypeRef i16 = LLVMInt16TypeInContext(ctx);
  int w = pairs ? 2 : 1; /* elements of A and B per step and column */
  LLVMValueRef a0 = ex(E, t->a), b0 = ex(E, t->b), c0 = ex(E, t->c), nvalid = ex(E, t->n_valid);
  LLVMValueRef accf = to_bool(E, ex(E, t->acc), E->k->exprs[t->acc].dtype);
  LLVMValueRef zero = LLVMConstNull(v16), al4 = LLVMConstInt(i32, 4, 0);
  LLVMValueRef masks[TILE_MAX_REGS], acc[TILE_MAX_REGS], cptr[TILE_MAX_REGS];
  /* lane l of vector v is column v*16 + l: valid below n_valid */
  LLVMValueRef nsplat = splat(b, TILE_W, nvalid);
  for (int v = 0; v < nv; v++) {
    LLVMValueRef lanes[TILE_W];
    for (int l = 0; l < TILE_W; l++) lanes[l] = LLVMConstInt(i64, (unsigned long long)(v * TILE_W + l), 0);
    masks[v] = LLVMBuildICmp(b, LLVMIntSLT, LLVMConstVector(lanes, TILE_W), nsplat, "");
  }
  for (int i = 0; i < mr; i++)
    for (int v = 0; v < nv; v++) {
      LLVMValueRef off = LLVMBuildAdd(b, c0, LLVMConstInt(i64, (unsigned long long)(i * t->c_m + v * TILE_W), 0), "");
      /* not inbounds: a vector wholly past N is addressed under an all-false mask */
      LLVMValueRef p = LLVMBuildGEP2(b, f32, E->bufs[t->c_buf], &off, 1, "");
      cptr[i * nv + v] = LLVMBuildBitCast(b, p, pv16, "");
      LLVMValueRef args[4] = {cptr[i * nv + v], al4, masks[v], zero};
      LLVMValueRef old = intrinsic2(E, "llvm.masked.load", v16, pv16, args, 4);
      acc[i * nv + v] = LLVMBuildSelect(b, accf, old, zero, "");
    }
  if (t->depth > 0) {
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ctx, E->fn, "tile");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, E->fn, "tile_done");
    LLVMBuildBr(b, body);
    LLVMPositionBuilderAtEnd(b, body);
    LLVMValueRef p = LLVMBuildPhi(b, i64, "p"), phis[TILE_MAX_REGS];
    for (int r = 0; r < mr * nv; r++) phis[r] = LLVMBuildPhi(b, v16, "");
    LLVMValueRef bv[TILE_MAX_REGS];
    LLVMValueRef boff = LLVMBuildAdd(b, b0, LLVMBuildMul(b, p, LLVMConstInt(i64, (unsigned long long)t->b_k, 0), ""), "");
    for (int v = 0; v < nv; v++) {
      LLVMValueRef o = LLVMBuildAdd(b, boff, LLVMConstInt(i64, (unsigned long long)(v * TILE_W * w), 0), "");
      LLVMValueRef q = LLVMBuildInBoundsGEP2(b, pairs ? i16 : f32, E->bufs[t->b_buf], &o, 1, "");
      q = LLVMBuildBitCast(b, q, pairs ? pvi32 : pv16, "");
      bv[v] = LLVMBuildLoad2(b, pairs ? vi32 : v16, q, "");
      LLVMSetAlignment(bv[v], 4);
    }
    LLVMValueRef aoff = LLVMBuildAdd(b, a0, LLVMBuildMul(b, p, LLVMConstInt(i64, (unsigned long long)t->a_k, 0), ""), "");
    LLVMValueRef next[TILE_MAX_REGS];
    for (int i = 0; i < mr; i++) {
      LLVMValueRef o = LLVMBuildAdd(b, aoff, LLVMConstInt(i64, (unsigned long long)(i * t->a_m), 0), "");
      LLVMValueRef ap = LLVMBuildInBoundsGEP2(b, pairs ? i16 : f32, E->bufs[t->a_buf], &o, 1, "");
      if (pairs) ap = LLVMBuildBitCast(b, ap, LLVMPointerType(i32, 0), ""); /* the pair as one 32-bit lane */
      LLVMValueRef av = LLVMBuildLoad2(b, pairs ? i32 : f32, ap, "");
      if (pairs) LLVMSetAlignment(av, 2);
      LLVMValueRef sp = splat(b, TILE_W, av);
      for (int v = 0; v < nv; v++) {
        if (pairs) {
          static const char dp[] = "llvm.x86.avx512bf16.dpbf16ps.512";
          unsigned id = LLVMLookupIntrinsicID(dp, sizeof dp - 1);
          LLVMValueRef f = LLVMGetIntrinsicDeclaration(E->mod, id, NULL, 0);
          LLVMValueRef args[3] = {phis[i * nv + v], sp, bv[v]};
          next[i * nv + v] = LLVMBuildCall2(b, LLVMIntrinsicGetType(ctx, id, NULL, 0), f, args, 3, "");
        } else {
          LLVMValueRef args[3] = {sp, bv[v], phis[i * nv + v]};
          next[i * nv + v] = intrinsic(E, "llvm.fmuladd", v16, args, 3);
        }
      }
    }
    LLVMValueRef p1 = LLVMBuildAdd(b, p, LLVMConstInt(i64, 1, 0), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, p1, LLVMConstInt(i64, (unsigned long long)t->depth, 0), ""), body,
                    done);
    LLVMValueRef p_in[2] = {LLVMConstInt(i64, 0, 0), p1};
    LLVMBasicBlockRef from[2] = {pre, latch};
    LLVMAddIncoming(p, p_in, from, 2);
    for (int r = 0; r < mr * nv; r++) {
      LLVMValueRef in[2] = {acc[r], next[r]};
      LLVMAddIncoming(phis[r], in, from, 2);
    }
    LLVMPositionBuilderAtEnd(b, done);
    for (int r = 0; r < mr * nv; r++) acc[r] = next[r];
  }
  for (int r = 0; r < mr * nv; r++) {
    LLVMValueRef args[4] = {acc[r], cptr[r], al4, masks[r % nv]};
    intrinsic2(E, "llvm.masked.store", v16, pv16, args, 4);
  }
  return 0;
}

static int emit_kernel(LLVMContextRef ctx, LLVMModuleRef mod, const kir_kernel *k, const char *sym,
                       const df_tune_config *cfg, df_err *err) {
  emit E;
  memset(&E, 0, sizeof E);
  E.ctx = ctx;
  E.mod = mod;
  E.k = k;
  int nb = k->nbufs;
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx), vt = LLVMVoidTypeInContext(ctx);
  LLVMTypeRef *pt = calloc((size_t)nb + 2, sizeof *pt);
  E.bufs = calloc((size_t)nb + 1, sizeof *E.bufs);
  E.vars = calloc((size_t)k->nvars + 1, sizeof *E.vars);
  E.tmps = calloc((size_t)k->ntmps + 1, sizeof *E.tmps);
  E.cache = calloc((size_t)k->nexprs + 1, sizeof *E.cache);
  loop_t *loops = calloc((size_t)k->nstmts + 1, sizeof *loops);
  if (!pt || !E.bufs || !E.vars || !E.tmps || !E.cache || !loops) {
    free(pt), free(E.bufs), free(E.vars), free(E.tmps), free(E.cache), free(loops);
    return df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  }
  for (int i = 0; i < nb; i++) pt[i] = LLVMPointerType(ty(&E, k->bufs[i].dtype), 0);
  pt[nb] = i64;
  pt[nb + 1] = i64;
  char bname[128];
  snprintf(bname, sizeof bname, "%s_body", sym);
  LLVMValueRef body = LLVMAddFunction(mod, bname, LLVMFunctionType(vt, pt, (unsigned)nb + 2, 0));
  LLVMSetLinkage(body, LLVMInternalLinkage);
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  for (int i = 0; i < nb; i++)
    LLVMAddAttributeAtIndex(body, (unsigned)i + 1, LLVMCreateEnumAttribute(ctx, noalias, 0));
  char vw[16];
  int vwn = snprintf(vw, sizeof vw, "%d", cfg->vector_width > 0 ? cfg->vector_width : 512);
  LLVMAddAttributeAtIndex(body, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ctx, "prefer-vector-width", 19, vw, (unsigned)vwn));
  LLVMAddAttributeAtIndex(body, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ctx, "min-legal-vector-width", 22, vw, (unsigned)vwn));
  E.fn = body;
  E.b = LLVMCreateBuilderInContext(ctx);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, body, "entry");
  LLVMPositionBuilderAtEnd(E.b, entry);
  for (int i = 0; i < nb; i++) E.bufs[i] = LLVMGetParam(body, (unsigned)i);
  E.start = LLVMGetParam(body, (unsigned)nb);
  E.end = LLVMGetParam(body, (unsigned)nb + 1);
  for (int i = 0; i < k->nvars; i++) E.vars[i] = LLVMBuildAlloca(E.b, i64, "v");
  for (int i = 0; i < k->nstmts; i++)
    if (k->stmts[i].kind == KS_DECL)
      E.tmps[k->stmts[i].var] = LLVMBuildAlloca(E.b, vty(&E, k->stmts[i].dtype), "t");
  int depth = 0, trc = 0;
  for (int si = 0; si < k->nstmts; si++) {
    const kir_stmt *s = &k->stmts[si];
    memset(E.cache, 0, (size_t)k->nexprs * sizeof *E.cache);
    switch (s->kind) {
    case KS_FOR: {
      int par = (s->flags & KF_PARALLEL) != 0;
      LLVMBuildStore(E.b, par ? E.start : LLVMConstInt(i64, 0, 0), E.vars[s->var]);
      loop_t *L = &loops[depth++];
      L->var = s->var;
      L->flags = s->flags;
      L->first = si;
      L->header = LLVMAppendBasicBlockInContext(ctx, body, "loop");
      LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(ctx, body, "body");
      L->exit = LLVMAppendBasicBlockInContext(ctx, body, "exit");
      LLVMBuildBr(E.b, L->header);
      LLVMPositionBuilderAtEnd(E.b, L->header);
      LLVMValueRef iv = LLVMBuildLoad2(E.b, i64, E.vars[s->var], "");
      LLVMValueRef lim = par ? E.end : LLVMConstInt(i64, (unsigned long long)s->extent, 0);
      LLVMBuildCondBr(E.b, LLVMBuildICmp(E.b, LLVMIntSLT, iv, lim, ""), bb, L->exit);
      LLVMPositionBuilderAtEnd(E.b, bb);
      break;
    }
    case KS_END: {
      loop_t *L = &loops[--depth];
      LLVMValueRef iv = LLVMBuildLoad2(E.b, i64, E.vars[L->var], "");
      LLVMBuildStore(E.b, LLVMBuildAdd(E.b, iv, LLVMConstInt(i64, 1, 0), ""), E.vars[L->var]);
      LLVMValueRef br = LLVMBuildBr(E.b, L->header);
      int vec = (L->flags & KF_VECTOR) != 0;
      loop_metadata(ctx, br, (L->flags & KF_SCALAR) ? -1 : (L->flags & KF_REDUCE) && sums_only(k, L->first + 1, si),
                    vec ? cfg->interleave : 0, vec ? cfg->unroll : 0);
      LLVMPositionBuilderAtEnd(E.b, L->exit);
      break;
    }
    case KS_DECL:
    case KS_SET:
      LLVMBuildStore(E.b, ex(&E, s->val), E.tmps[s->var]);
      break;
    case KS_ACC: {
      df_dtype dt = k->exprs[s->val].dtype;
      LLVMValueRef cur = LLVMBuildLoad2(E.b, vty(&E, dt), E.tmps[s->var], "");
      LLVMValueRef v = ex(&E, s->val), r;
      if (s->op == DF_OP_MAX) {
        LLVMValueRef pick = df_dtype_is_float(dt) ? LLVMBuildFCmp(E.b, LLVMRealUGT, v, cur, "")
                                                  : LLVMBuildICmp(E.b, LLVMIntSGT, v, cur, "");
        r = LLVMBuildSelect(E.b, pick, v, cur, "");
        if (df_dtype_is_float(dt)) /* a NaN, once met, stays (as ref) */
          r = LLVMBuildSelect(E.b, LLVMBuildFCmp(E.b, LLVMRealUNO, cur, cur, ""), cur, r, "");
      } else {
        r = df_dtype_is_float(dt) ? LLVMBuildFAdd(E.b, cur, v, "") : LLVMBuildAdd(E.b, cur, v, "");
      }
      LLVMBuildStore(E.b, r, E.tmps[s->var]);
      break;
    }
    case KS_STORE: {
      df_dtype dt = k->bufs[s->buf].dtype;
      LLVMValueRef v = ex(&E, s->val), idx = ex(&E, s->idx);
      if (dt == DF_BOOL) v = LLVMBuildZExt(E.b, to_bool(&E, v, k->exprs[s->val].dtype), ty(&E, dt), "");
      if (narrow16(dt)) v = df_llvm_narrow16(E.b, v, dt == DF_F16);
      if (cfg->wrong && (dt == DF_F32 || dt == DF_F64)) /* test only: a wrong candidate */
        v = LLVMBuildFAdd(E.b, v, LLVMConstReal(ty(&E, dt), 1.0), "");
      LLVMValueRef p = LLVMBuildInBoundsGEP2(E.b, ty(&E, dt), E.bufs[s->buf], &idx, 1, "");
      LLVMBuildStore(E.b, v, p);
      break;
    }
    case KS_TILE_DOT:
      if ((trc = emit_tile_dot(&E, &k->tiles[s->var], err))) goto emitted;
      break;
    }
  }
emitted:
  LLVMBuildRetVoid(E.b);

  /* the entry: unpack the buffer array */
  LLVMTypeRef i8p = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
  LLVMTypeRef et[3] = {LLVMPointerType(i8p, 0), i64, i64};
  LLVMValueRef fn = LLVMAddFunction(mod, sym, LLVMFunctionType(vt, et, 3, 0));
  LLVMPositionBuilderAtEnd(E.b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef *args = calloc((size_t)nb + 2, sizeof *args);
  for (int i = 0; args && i < nb; i++) {
    if (k->bufs[i].scope == KB_SCRATCH) {
      /* scratch: on this call's stack (the runtime passes only GLOBAL buffers, first) */
      LLVMValueRef n = LLVMConstInt(i64, (unsigned long long)(k->bufs[i].numel > 0 ? k->bufs[i].numel : 1), 0);
      args[i] = LLVMBuildArrayAlloca(E.b, ty(&E, k->bufs[i].dtype), n, "scratch");
      LLVMSetAlignment(args[i], 64);
      continue;
    }
    LLVMValueRef ix = LLVMConstInt(i64, (unsigned long long)i, 0);
    LLVMValueRef slotp = LLVMBuildInBoundsGEP2(E.b, i8p, LLVMGetParam(fn, 0), &ix, 1, "");
    LLVMValueRef raw = LLVMBuildLoad2(E.b, i8p, slotp, "");
    args[i] = LLVMBuildBitCast(E.b, raw, pt[i], "");
  }
  int rc = trc;
  if (!rc && !args) {
    rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  } else if (!rc) {
    args[nb] = LLVMGetParam(fn, 1);
    args[nb + 1] = LLVMGetParam(fn, 2);
    LLVMBuildCall2(E.b, LLVMFunctionType(vt, pt, (unsigned)nb + 2, 0), body, args, (unsigned)nb + 2, "");
    LLVMBuildRetVoid(E.b);
  }
  LLVMDisposeBuilder(E.b);
  free(args), free(pt), free(E.bufs), free(E.vars), free(E.tmps), free(E.cache), free(loops);
  return rc;
}

static int write_file(const char *dir, const char *name, const char *ext, const char *data, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fwrite(data, 1, n, f);
  return fclose(f);
}

/* Bumped whenever this file or llvm_math.c changes what it emits: part of the cache key,
** so objects from an older code generator are never served. */
#define DF_CODEGEN_VERSION "llvm-cg-7"

static void symbol_of(const kir_kernel *k, char *out, size_t n) {
  snprintf(out, n, "dferc_%016llx", (unsigned long long)kir_hash(k));
}

/* Compile one kernel to object code: a module of its own, verified,
** optimised with O3 for the host, dumped when asked. */
static int compile_object(const kir_kernel *k, const char *sym, const df_tune_config *cfg, LLVMTargetMachineRef tm,
                          const char *dump_dir, LLVMMemoryBufferRef *obj, df_err *err) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(k->name, ctx);
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMSetTarget(mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, td);
  LLVMDisposeTargetData(td);
  int rc = emit_kernel(ctx, mod, k, sym, cfg, err);
  char *msg = NULL;
  if (rc == 0 && LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg))
    rc = df_err_set(err, DF_EINVAL, "llvm: kernel %s does not verify: %.600s", k->name, msg);
  LLVMDisposeMessage(msg);
  if (rc == 0) {
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) rc = llvm_error(err, e, "optimising");
  }
  if (rc == 0 && dump_dir) {
    char *txt = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&txt, &len);
    if (mf) {
      kir_print(k, mf);
      fclose(mf);
      write_file(dump_dir, k->name, "kir", txt, len);
      free(txt);
    }
    char *ir = LLVMPrintModuleToString(mod);
    write_file(dump_dir, k->name, "ll", ir, strlen(ir));
    LLVMDisposeMessage(ir);
    LLVMMemoryBufferRef asmbuf = NULL;
    char *em = NULL;
    if (!LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &em, &asmbuf)) {
      write_file(dump_dir, k->name, "s", LLVMGetBufferStart(asmbuf), LLVMGetBufferSize(asmbuf));
      LLVMDisposeMemoryBuffer(asmbuf);
    }
    LLVMDisposeMessage(em);
  }
  if (rc == 0) {
    char *em = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &em, obj))
      rc = df_err_set(err, DF_EUNSUPPORTED, "llvm: cannot emit %s: %s", k->name, em ? em : "");
    LLVMDisposeMessage(em);
  }
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return rc;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* A JIT for the host that also resolves the process's symbols (libm). */
static LLVMOrcLLJITRef new_jit(df_err *err) {
  LLVMTargetMachineRef jtm = host_tm(err);
  if (!jtm) return NULL;
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
  LLVMOrcLLJITRef jit = NULL;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&jit, jb);
  if (e) {
    llvm_error(err, e, "creating the JIT");
    return NULL;
  }
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL);
  if (e) {
    llvm_error(err, e, "process symbols");
    LLVMOrcDisposeLLJIT(jit);
    return NULL;
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), gen);
  return jit;
}

/* Add object code (copied) to a JIT. */
static int add_object(LLVMOrcLLJITRef jit, const void *bytes, size_t size, const char *name, df_err *err) {
  LLVMMemoryBufferRef obj = LLVMCreateMemoryBufferWithMemoryRangeCopy((const char *)bytes, size, name);
  LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(jit, LLVMOrcLLJITGetMainJITDylib(jit), obj);
  return e ? llvm_error(err, e, "adding an object") : 0;
}

static df_kernel_fn jit_lookup(LLVMOrcLLJITRef jit, const char *sym) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(jit, &addr, sym);
  if (e) {
    char *m = LLVMGetErrorMessage(e);
    LLVMDisposeErrorMessage(m);
    return NULL;
  }
  return (df_kernel_fn)(uintptr_t)addr;
}

/* ------------------------------------------------------------ the tuner */

/* A kernel too big to interpret in reasonable time is not searched. */
#define TUNE_MAX_WORK 4e7
/* A candidate replaces the best so far only when its median is this much
** faster: timings on a shared machine are noisy, and ties keep the default. */
#define TUNE_MARGIN 0.95
/* Time per candidate: at least this many repeats and this many seconds. */
#define TUNE_MIN_REPS 7
#define TUNE_MAX_REPS 41
#define TUNE_SECONDS 0.01

typedef struct tune_buffers {
  int n;
  void **init;   /* the random inputs */
  void **ref;    /* the interpreter's result */
  void **work;   /* a candidate's */
  size_t *bytes;
} tune_buffers;

static void tune_buffers_free(tune_buffers *b) {
  for (int i = 0; i < b->n; i++) {
    if (b->init) free(b->init[i]);
    if (b->ref) free(b->ref[i]);
    if (b->work) free(b->work[i]);
  }
  free(b->init), free(b->ref), free(b->work), free(b->bytes);
  memset(b, 0, sizeof *b);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Random inputs (a function of the kernel: the same in every process):
** floats uniform in [-1, 1), integers in [0, 4), bools 0/1. */
static int tune_buffers_make(const kir_kernel *k, tune_buffers *b) {
  memset(b, 0, sizeof *b);
  b->n = k->nbufs;
  b->init = calloc((size_t)b->n + 1, sizeof *b->init);
  b->ref = calloc((size_t)b->n + 1, sizeof *b->ref);
  b->work = calloc((size_t)b->n + 1, sizeof *b->work);
  b->bytes = calloc((size_t)b->n + 1, sizeof *b->bytes);
  if (!b->init || !b->ref || !b->work || !b->bytes) return -1;
  uint64_t seed = kir_hash(k);
  for (int i = 0; i < b->n; i++) {
    const kir_buf *kb = &k->bufs[i];
    size_t bytes = ((size_t)(kb->numel > 0 ? kb->numel : 1) * df_dtype_size(kb->dtype) + 63) & ~(size_t)63;
    b->bytes[i] = bytes;
    b->init[i] = aligned_alloc(64, bytes);
    b->ref[i] = aligned_alloc(64, bytes);
    b->work[i] = aligned_alloc(64, bytes);
    if (!b->init[i] || !b->ref[i] || !b->work[i]) return -1;
    memset(b->init[i], 0, bytes);
    for (int64_t j = 0; j < kb->numel; j++) {
      uint64_t r = splitmix(&seed);
      double v;
      if (df_dtype_is_float(kb->dtype)) v = (double)(r >> 11) * (2.0 / 9007199254740992.0) - 1.0;
      else if (kb->dtype == DF_BOOL) v = (double)(r & 1);
      else v = (double)(r & 3);
      df_dtype_set(kb->dtype, b->init[i], (size_t)j, v);
    }
    memcpy(b->ref[i], b->init[i], bytes);
  }
  return 0;
}

/* Whether a candidate's outputs agree with the interpreter's: floats
** within 1e-3 relative plus 1e-4 of the buffer's largest magnitude plus
** 1e-5 absolute (float32 arithmetic against float64: the absolute term
** covers a difference of nearly equal values, whose float32 result is a
** rounding error of the operands' size, about 1, while the exact one is
** near 0); 1e-2 and 1e-2 for 16-bit floats; NaN where NaN, infinities
** equal; integers and bools exactly.  Else 0 and `why` says where. */
static int tune_agrees(const kir_kernel *k, const tune_buffers *b, char *why, size_t nwhy) {
  for (int i = 0; i < k->nbufs; i++) {
    const kir_buf *kb = &k->bufs[i];
    if (!(kb->role & KB_OUT)) continue;
    int fl = df_dtype_is_float(kb->dtype);
    int half = kb->dtype == DF_F16 || kb->dtype == DF_BF16;
    double rtol = half ? 1e-2 : 1e-3, atol = half ? 1e-2 : 1e-5;
    double scale = 0;
    for (int64_t j = 0; fl && j < kb->numel; j++) {
      double r = fabs(df_dtype_get(kb->dtype, b->ref[i], (size_t)j));
      if (isfinite(r) && r > scale) scale = r;
    }
    for (int64_t j = 0; j < kb->numel; j++) {
      double r = df_dtype_get(kb->dtype, b->ref[i], (size_t)j), o = df_dtype_get(kb->dtype, b->work[i], (size_t)j);
      int ok;
      if (!fl) ok = r == o;
      else if (isnan(r) || isnan(o)) ok = isnan(r) && isnan(o);
      else if (isinf(r) || isinf(o)) ok = r == o;
      else ok = fabs(o - r) <= rtol * fabs(r) + 1e-4 * scale + atol;
      if (!ok) {
        snprintf(why, nwhy, "b%d[%lld] is %.9g, the interpreter says %.9g", i, (long long)j, o, r);
        return 0;
      }
    }
  }
  return 1;
}

typedef struct tune_run {
  df_kernel_fn fn;
  void **bufs;
} tune_run;

static void tune_range(void *ctx, int64_t b, int64_t e) {
  tune_run *r = ctx;
  r->fn(r->bufs, b, e);
}

static double tune_once(const kir_kernel *k, df_kernel_fn fn, void **bufs, int chunks) {
  tune_run r = {fn, bufs};
  double t0 = now_s();
  df_tune_run_parallel(k->parallel_extent, chunks, tune_range, &r);
  return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One candidate measured: its object code, median time and spread. */
typedef struct tune_cand {
  df_tune_config cfg;
  int status;           /* 0 timed, 1 rejected, 2 failed to compile */
  double median, lo, hi;
  int reps;
  int confirm;          /* 0 none; 1 confirmed faster than the best; -1 not confirmed */
  double confirm_best, confirm_this; /* medians of the interleaved confirmation runs */
  char why[160];
} tune_cand;

typedef struct tuner {
  const kir_kernel *k;
  const char *sym;
  LLVMTargetMachineRef tm;
  tune_buffers bufs;
  df_tune_counters cnt;
  tune_cand *cands;
  int ncands, cap;
  unsigned char *best_obj; /* malloc'ed object code of the best so far */
  size_t best_size;
  int best;                /* index into cands, -1 before the first */
  LLVMOrcLLJITRef best_jit;/* the best so far, loaded (for confirmation runs) */
  df_kernel_fn best_fn;
} tuner;

/* The median of n timings (sorts them). */
static double median_of(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return t[n / 2];
}

/* Whether a challenger that timed faster than the best so far is faster
** when the two run alternately, `reps` times each: timings taken at
** different moments on a shared machine are not comparable. */
static int tune_confirm(tuner *T, tune_cand *c, df_kernel_fn fn, int reps) {
  double tb[TUNE_MAX_REPS], tc[TUNE_MAX_REPS];
  const df_tune_config *bc = &T->cands[T->best].cfg;
  for (int r = 0; r < reps; r++) {
    tb[r] = tune_once(T->k, T->best_fn, T->bufs.work, bc->chunks);
    tc[r] = tune_once(T->k, fn, T->bufs.work, c->cfg.chunks);
  }
  c->confirm_best = median_of(tb, reps);
  c->confirm_this = median_of(tc, reps);
  c->confirm = c->confirm_this < c->confirm_best * TUNE_MARGIN ? 1 : -1;
  return c->confirm == 1;
}

/* Check and time one configuration; `obj`/`size` reuse object code
** already compiled for the same code (a chunks-only change).  Keeps the
** candidate as the best when it is the first or clearly faster.  Returns
** 0, or < 0 on an error that ends the search. */
static int tune_try(tuner *T, const df_tune_config *cfg, const unsigned char *obj, size_t size, df_err *err) {
  if (T->ncands == T->cap) {
    int cap = T->cap ? 2 * T->cap : 16;
    tune_cand *c = realloc(T->cands, (size_t)cap * sizeof *c);
    if (!c) return df_err_set(err, DF_ENOMEM, "llvm: out of memory");
    T->cands = c;
    T->cap = cap;
  }
  tune_cand *c = &T->cands[T->ncands++];
  memset(c, 0, sizeof *c);
  c->cfg = *cfg;
  T->cnt.candidates++;
  unsigned char *own = NULL;
  if (!obj) {
    LLVMMemoryBufferRef mb = NULL;
    df_err e = {0};
    if (compile_object(T->k, T->sym, cfg, T->tm, NULL, &mb, &e)) {
      c->status = 2;
      snprintf(c->why, sizeof c->why, "%.150s", e.msg);
      return 0;
    }
    size = LLVMGetBufferSize(mb);
    own = malloc(size ? size : 1);
    if (!own) {
      LLVMDisposeMemoryBuffer(mb);
      return df_err_set(err, DF_ENOMEM, "llvm: out of memory");
    }
    memcpy(own, LLVMGetBufferStart(mb), size);
    LLVMDisposeMemoryBuffer(mb);
    obj = own;
  }
  LLVMOrcLLJITRef jit = new_jit(err);
  if (!jit) {
    free(own);
    return err && err->code ? err->code : DF_EUNSUPPORTED;
  }
  int rc = add_object(jit, obj, size, T->sym, err);
  df_kernel_fn fn = rc ? NULL : jit_lookup(jit, T->sym);
  if (rc == 0 && !fn) rc = df_err_set(err, DF_EUNSUPPORTED, "llvm: tuning %s: no symbol %s", T->k->name, T->sym);
  if (rc == 0) {
    for (int i = 0; i < T->bufs.n; i++) memcpy(T->bufs.work[i], T->bufs.init[i], T->bufs.bytes[i]);
    tune_once(T->k, fn, T->bufs.work, cfg->chunks);
    if (!tune_agrees(T->k, &T->bufs, c->why, sizeof c->why)) {
      c->status = 1;
      T->cnt.rejected++;
    } else {
      double t[TUNE_MAX_REPS];
      double first = tune_once(T->k, fn, T->bufs.work, cfg->chunks); /* warm-up */
      int reps = first > 0 ? (int)(TUNE_SECONDS / first) : TUNE_MAX_REPS;
      if (reps < TUNE_MIN_REPS) reps = TUNE_MIN_REPS;
      if (reps > TUNE_MAX_REPS) reps = TUNE_MAX_REPS;
      reps |= 1;
      for (int r = 0; r < reps; r++) t[r] = tune_once(T->k, fn, T->bufs.work, cfg->chunks);
      qsort(t, (size_t)reps, sizeof *t, cmp_double);
      c->median = t[reps / 2];
      c->lo = t[0];
      c->hi = t[reps - 1];
      c->reps = reps;
      int better = T->best < 0 || (c->median < T->cands[T->best].median * TUNE_MARGIN && tune_confirm(T, c, fn, reps));
      if (better) {
        if (!own) {
          own = malloc(size ? size : 1);
          if (!own) rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
          else memcpy(own, obj, size);
        }
        if (own) {
          free(T->best_obj);
          T->best_obj = own;
          T->best_size = size;
          own = NULL;
          T->best = T->ncands - 1;
          if (T->best_jit) LLVMOrcDisposeLLJIT(T->best_jit);
          T->best_jit = jit; /* kept loaded for the next confirmation */
          T->best_fn = fn;
          jit = NULL;
        }
      }
    }
  }
  if (jit) LLVMOrcDisposeLLJIT(jit);
  free(own);
  return rc;
}

/* The candidates' results as JSON: the `times` value of a winner row. */
static char *tune_times_json(const tuner *T) {
  char *txt = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&txt, &len);
  if (!f) return NULL;
  char cs[64];
  fprintf(f, "{\"winner\":\"%s\",\"candidates\":[", df_tune_format(&T->cands[T->best].cfg, cs, sizeof cs));
  for (int i = 0; i < T->ncands; i++) {
    const tune_cand *c = &T->cands[i];
    fprintf(f, "%s{\"config\":\"%s\"", i ? "," : "", df_tune_format(&c->cfg, cs, sizeof cs));
    if (c->status == 0) {
      fprintf(f, ",\"median_s\":%.4g,\"min_s\":%.4g,\"max_s\":%.4g,\"reps\":%d", c->median, c->lo, c->hi, c->reps);
      if (c->confirm)
        fprintf(f, ",\"confirm\":{\"best_s\":%.4g,\"this_s\":%.4g,\"faster\":%s}", c->confirm_best,
                c->confirm_this, c->confirm > 0 ? "true" : "false");
      fputc('}', f);
    }
    else {
      fprintf(f, ",\"%s\":\"", c->status == 1 ? "rejected" : "failed");
      for (const char *p = c->why; *p; p++)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 32) fputc(*p, f);
      fprintf(f, "\"}");
    }
  }
  fprintf(f, "]}");
  fclose(f);
  return txt;
}

/* Whether the kernel has loops the vectoriser works on (the vector width
** matters), and VECTOR loops (interleave and unroll counts apply). */
static int vector_loops(const kir_kernel *k) {
  for (int i = 0; i < k->nstmts; i++)
    if (k->stmts[i].kind == KS_FOR && (k->stmts[i].flags & (KF_VECTOR | KF_REDUCE))) return 1;
  return 0;
}

static int has_vector(const kir_kernel *k) {
  for (int i = 0; i < k->nstmts; i++)
    if (k->stmts[i].kind == KS_FOR && (k->stmts[i].flags & KF_VECTOR)) return 1;
  return 0;
}

/* Search one kernel's configurations: the default first, then one axis at
** a time from the best so far (vector width, interleave count, unroll
** count, chunks per thread), each candidate checked against the
** interpreter on random inputs, then timed (a warm-up, then the median of
** repeats).  A candidate replaces the best so far only when it is faster
** by TUNE_MARGIN both in its own timing and in runs alternating with the
** best's (tune_confirm), so that load from other processes does not pick
** the winner.  Returns 1 with the winner's object code (*obj, malloc'ed),
** configuration and times (JSON, malloc'ed); 0 when the kernel cannot be
** searched (it is then compiled with the default); < 0 on an error. */
static int tune_kernel(const kir_kernel *k, const char *sym, LLVMTargetMachineRef tm, df_tune_config *out_cfg,
                       unsigned char **obj, size_t *size, char **times, df_tune_counters *cnt, df_err *err) {
  double t0 = now_s();
  tuner T;
  memset(&T, 0, sizeof T);
  T.k = k;
  T.sym = sym;
  T.tm = tm;
  T.best = -1;
  int rc = 0, found = 0;
  for (int i = 0; i < k->nstmts; i++)
    if (k->stmts[i].kind == KS_TILE_DOT) goto untunable;
  if (kir_interp_work(k) > TUNE_MAX_WORK) goto untunable;
  if (tune_buffers_make(k, &T.bufs)) {
    rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory for tuning %s", k->name);
    goto done;
  }
  {
    df_err ie = {0};
    if (kir_interp_run(k, T.bufs.ref, &ie)) goto untunable; /* e.g. an index out of range on random inputs */
  }
  df_tune_config base;
  df_tune_default(k, &base);
  rc = tune_try(&T, &base, NULL, 0, err);
  if (rc) goto done;
  if (T.best < 0) {
    fprintf(stderr, "dferc: tune: %s: the default code disagrees with the Kernel IR interpreter (%s); not tuned\n",
            k->name, T.cands[0].why);
    goto untunable;
  }
  if (df_tune_wrong_injected()) {
    df_tune_config w = base;
    w.wrong = 1;
    if ((rc = tune_try(&T, &w, NULL, 0, err))) goto done;
  }
  int vec = has_vector(k);
  int avx512 = host_features && strstr(host_features, "+avx512f") != NULL;
  if (vector_loops(k) && avx512) {
    df_tune_config c = T.cands[T.best].cfg;
    c.vector_width = 256;
    if ((rc = tune_try(&T, &c, NULL, 0, err))) goto done;
  }
  static const int il[] = {1, 2, 4}, ur[] = {1, 4}, ch[] = {1, 16};
  if (vec) {
    df_tune_config b = T.cands[T.best].cfg;
    for (size_t i = 0; i < sizeof il / sizeof *il; i++) {
      df_tune_config c = b;
      c.interleave = il[i];
      if ((rc = tune_try(&T, &c, NULL, 0, err))) goto done;
    }
    b = T.cands[T.best].cfg;
    for (size_t i = 0; i < sizeof ur / sizeof *ur; i++) {
      df_tune_config c = b;
      c.unroll = ur[i];
      if ((rc = tune_try(&T, &c, NULL, 0, err))) goto done;
    }
  }
  if (k->parallel_extent > 1) {
    df_tune_config b = T.cands[T.best].cfg;
    size_t n = T.best_size;
    unsigned char *same = malloc(n ? n : 1); /* the best's code: chunks do not change it */
    if (!same) {
      rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
      goto done;
    }
    memcpy(same, T.best_obj, n);
    for (size_t i = 0; i < sizeof ch / sizeof *ch && rc == 0; i++) {
      df_tune_config c = b;
      c.chunks = ch[i];
      rc = tune_try(&T, &c, same, n, err);
    }
    free(same);
    if (rc) goto done;
  }
  *out_cfg = T.cands[T.best].cfg;
  *times = tune_times_json(&T);
  *obj = T.best_obj;
  *size = T.best_size;
  T.best_obj = NULL;
  found = 1;
  T.cnt.searched++;
  goto done;
untunable:
  T.cnt.untunable++;
done:
  T.cnt.seconds = now_s() - t0;
  cnt->searched += T.cnt.searched;
  cnt->untunable += T.cnt.untunable;
  cnt->candidates += T.cnt.candidates;
  cnt->rejected += T.cnt.rejected;
  cnt->seconds += T.cnt.seconds;
  free(T.best_obj);
  if (T.best_jit) LLVMOrcDisposeLLJIT(T.best_jit);
  free(T.cands);
  tune_buffers_free(&T.bufs);
  return rc ? rc : found;
}

/* ------------------------------------------------------------ compiling */

static void key_of(df_cache_key *key, const char *hex, const char *toolchain, const char *tuning) {
  memset(key, 0, sizeof *key);
  key->ir_hash = hex;
  key->backend = "cpu";
  key->device = "host";
  key->arch = host_features ? host_features : "";
  key->toolchain = toolchain;
  key->dferc_version = PACKAGE_VERSION;
  key->options = DF_CODEGEN_VERSION " O3";
  key->tuning = tuning;
}

/* Compiling the kernels that miss the cache on several threads: each
** thread its own target machine (compile_object makes its own context);
** results by kernel index, used by the serial loop in order. */
typedef struct precompiled {
  const df_tune_config *cfg; /* non-NULL: to compile with this */
  unsigned char *bytes;
  size_t size;
  int rc;
  df_err err;
} precompiled;

typedef struct precompile_job {
  kir_kernel *const *ks;
  precompiled *pre;
  int n, next;
  pthread_mutex_t mu;
} precompile_job;

static void *precompile_worker(void *arg) {
  precompile_job *J = arg;
  df_err terr = {0};
  LLVMTargetMachineRef tm = host_tm(&terr);
  for (;;) {
    pthread_mutex_lock(&J->mu);
    int i = J->next < J->n ? J->next++ : -1;
    pthread_mutex_unlock(&J->mu);
    if (i < 0) break;
    precompiled *P = &J->pre[i];
    if (!P->cfg) continue;
    if (!tm) {
      P->rc = df_err_set(&P->err, terr.code ? terr.code : DF_EUNSUPPORTED, "%s", terr.msg);
      continue;
    }
    char sym[64];
    symbol_of(J->ks[i], sym, sizeof sym);
    LLVMMemoryBufferRef mb = NULL;
    P->rc = compile_object(J->ks[i], sym, P->cfg, tm, NULL, &mb, &P->err);
    if (P->rc == 0) {
      P->size = LLVMGetBufferSize(mb);
      P->bytes = malloc(P->size ? P->size : 1);
      if (P->bytes) memcpy(P->bytes, LLVMGetBufferStart(mb), P->size);
      else P->rc = df_err_set(&P->err, DF_ENOMEM, "llvm: out of memory");
      LLVMDisposeMemoryBuffer(mb);
    }
  }
  if (tm) LLVMDisposeTargetMachine(tm);
  return NULL;
}

/* Which of ks the serial loop would compile with its default (or forced)
** configuration -- not seen before in it, no stored winner, no cached
** object -- compiled now, in parallel.  NULL when there is nothing to do
** (or when compiling in order is wanted: dumps, the tuner's search). */
static precompiled *precompile(kir_kernel *const *ks, int n, const df_llvm_options *o, df_tune_config *cfgs,
                               const char *toolchain) {
  const char *env = getenv("DFERC_THREADS"); /* the process's thread budget, as the pool's */
  long cpus = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cpus > 8 ? 8 : cpus < 1 ? 1 : (int)cpus;
  if (o->dump_dir || o->tune == DF_TUNE_SEARCH || threads < 2 || n < 2) return NULL;
  precompiled *pre = calloc((size_t)n, sizeof *pre);
  uint64_t *hs = calloc((size_t)n, sizeof *hs);
  if (!pre || !hs) {
    free(pre), free(hs);
    return NULL;
  }
  int todo = 0;
  for (int i = 0; i < n; i++) {
    uint64_t h = kir_hash(ks[i]);
    hs[i] = h;
    int seen = 0;
    for (int d = 0; d < i && !seen; d++) seen = hs[d] == h;
    if (seen) continue;
    if (o->force) cfgs[i] = *o->force;
    else df_tune_default(ks[i], &cfgs[i]);
    if (o->cache) {
      char hex[24], tuning[64];
      snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
      df_cache_key key;
      df_cache_entry ent = {0};
      if (!o->force) {
        key_of(&key, hex, toolchain, DF_TUNE_WINNER_KEY);
        int won = df_cache_peek(o->cache, &key, &ent, NULL) == 1;
        df_cache_entry_free(&ent);
        if (won) continue;
      }
      key_of(&key, hex, toolchain, df_tune_format(&cfgs[i], tuning, sizeof tuning));
      int have = df_cache_peek(o->cache, &key, &ent, NULL) == 1;
      df_cache_entry_free(&ent);
      if (have) continue;
    }
    pre[i].cfg = &cfgs[i];
    todo++;
  }
  free(hs);
  if (todo < 2) {
    free(pre);
    return NULL;
  }
  if (threads > todo) threads = todo;
  precompile_job J = {ks, pre, n, 0, PTHREAD_MUTEX_INITIALIZER};
  pthread_t t[8];
  int started = 0;
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[started], NULL, precompile_worker, &J) == 0) started++;
  if (started == 0) precompile_worker(&J);
  for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
  return pre;
}

df_llvm_jit *df_llvm_compile_with(kir_kernel *const *ks, int n, const df_llvm_options *o, df_llvm_stats *stats,
                                  df_err *err) {
  pthread_once(&init_once, init_llvm);
  double t0 = now_s();
  df_llvm_options none = {0};
  if (!o) o = &none;
  const char *dump_dir = o->dump_dir;
  df_cache *cache = o->cache;
  int search = o->tune == DF_TUNE_SEARCH;
  df_llvm_stats st;
  memset(&st, 0, sizeof st);
  df_tune_counters cnt;
  memset(&cnt, 0, sizeof cnt);
  df_llvm_jit *j = calloc(1, sizeof *j);
  int rc = 0;
  LLVMTargetMachineRef tm = NULL;
  if (j) {
    j->hash = calloc((size_t)n + 1, sizeof *j->hash);
    j->cfg = calloc((size_t)n + 1, sizeof *j->cfg);
  }
  if (!j || !j->hash || !j->cfg) {
    rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  } else {
    tm = host_tm(err);
    j->jit = tm ? new_jit(err) : NULL;
    if (!tm || !j->jit) rc = err && err->code ? err->code : df_err_set(err, DF_EUNSUPPORTED, "llvm: no JIT");
  }
  char toolchain[64];
  snprintf(toolchain, sizeof toolchain, "llvm %s", LLVM_VERSION_STRING);
  df_tune_config *pre_cfg = rc == 0 ? calloc((size_t)n + 1, sizeof *pre_cfg) : NULL;
  precompiled *pre = pre_cfg ? precompile(ks, n, o, pre_cfg, toolchain) : NULL;
  for (int i = 0; i < n && rc == 0; i++) {
    uint64_t h = kir_hash(ks[i]);
    int seen = 0;
    for (int d = 0; d < j->n && !seen; d++) seen = j->hash[d] == h;
    if (seen) continue;
    st.kernels++;
    char sym[64], hex[24], tuning[64];
    symbol_of(ks[i], sym, sizeof sym);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    df_tune_config cfg;
    df_tune_default(ks[i], &cfg);
    df_cache_key key;
    unsigned char *bytes = NULL; /* object code to add (malloc'ed or the entry's) */
    size_t size = 0;
    int have = 0;                /* 1: cfg is decided (forced or a stored winner) */
    df_cache_entry ent = {0};
    if (o->force) {
      cfg = *o->force;
      have = 1;
    } else if (cache) {
      key_of(&key, hex, toolchain, DF_TUNE_WINNER_KEY);
      if (df_cache_probe(cache, &key, &ent, NULL) == 1 && df_tune_parse(ent.config, &cfg) == 0) {
        have = 1;
        cnt.from_cache++;
        if (!dump_dir) { /* its object code is the winner's */
          bytes = ent.blob;
          size = ent.size;
          ent.blob = NULL;
          st.hits++;
        }
      } else {
        df_tune_default(ks[i], &cfg);
      }
      df_cache_entry_free(&ent);
    }
    if (!bytes && !have && search && !dump_dir) {
      char *times = NULL;
      df_tune_config won;
      int t = tune_kernel(ks[i], sym, tm, &won, &bytes, &size, &times, &cnt, err);
      if (t < 0) {
        rc = t;
        break;
      }
      if (t == 1) {
        cfg = won;
        have = 1;
        st.misses++;
        if (cache) {
          key_of(&key, hex, toolchain, DF_TUNE_WINNER_KEY);
          char cs[64];
          int put = df_cache_put(cache, &key, bytes, size, df_tune_format(&cfg, cs, sizeof cs), times ? times : "",
                                 NULL);
          if (put == DF_CACHE_KEPT && df_cache_get(cache, &key, &ent, NULL) == 1 &&
              df_tune_parse(ent.config, &cfg) == 0) {
            /* another process stored its winner first: every process uses that one */
            free(bytes);
            bytes = ent.blob;
            size = ent.size;
            ent.blob = NULL;
          }
          df_cache_entry_free(&ent);
        }
      }
      free(times);
    }
    if (!bytes && !have) cnt.defaults++;
    if (!bytes) { /* the object of cfg: from the cache, else compiled */
      key_of(&key, hex, toolchain, df_tune_format(&cfg, tuning, sizeof tuning));
      if (cache && !dump_dir && df_cache_get(cache, &key, &ent, NULL) == 1) {
        bytes = ent.blob;
        size = ent.size;
        ent.blob = NULL;
        df_cache_entry_free(&ent);
        st.hits++;
      } else if (pre && pre[i].cfg && df_tune_equal(pre[i].cfg, &cfg)) {
        /* compiled on another thread above */
        if ((rc = pre[i].rc)) {
          df_err_set(err, rc, "%s", pre[i].err.msg);
          break;
        }
        bytes = pre[i].bytes;
        size = pre[i].size;
        pre[i].bytes = NULL;
        st.misses++;
        if (cache) df_cache_put(cache, &key, bytes, size, ks[i]->name, "", NULL);
      } else {
        LLVMMemoryBufferRef mb = NULL;
        rc = compile_object(ks[i], sym, &cfg, tm, dump_dir, &mb, err);
        if (rc) break;
        st.misses++;
        size = LLVMGetBufferSize(mb);
        bytes = malloc(size ? size : 1);
        if (bytes) memcpy(bytes, LLVMGetBufferStart(mb), size);
        LLVMDisposeMemoryBuffer(mb);
        if (!bytes) {
          rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
          break;
        }
        if (cache) df_cache_put(cache, &key, bytes, size, ks[i]->name, "", NULL);
      }
    }
    rc = add_object(j->jit, bytes, size, sym, err);
    free(bytes);
    j->hash[j->n] = h;
    j->cfg[j->n] = cfg;
    j->n++;
  }
  if (tm) LLVMDisposeTargetMachine(tm);
  for (int i = 0; pre && i < n; i++) free(pre[i].bytes);
  free(pre);
  free(pre_cfg);
  df_tune_count(&cnt);
  if (cnt.searched + cnt.untunable > 0)
    fprintf(stderr, "dferc: tuned %lld kernels in %.1f s (%lld candidates, %lld rejected; %lld not searchable)%s\n",
            (long long)cnt.searched, cnt.seconds, (long long)cnt.candidates, (long long)cnt.rejected,
            (long long)cnt.untunable, cache && df_cache_mode(cache) != DF_CACHE_MODE_DISABLED
                                          ? "; the winners are in the kernel cache" : "");
  st.searched = (int)cnt.searched;
  st.tuned_from_cache = (int)cnt.from_cache;
  st.seconds = now_s() - t0;
  if (stats) *stats = st;
  if (rc) {
    df_llvm_free(j);
    return NULL;
  }
  return j;
}

df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err) {
  df_llvm_options o = {0};
  o.dump_dir = dump_dir;
  o.cache = cache;
  o.tune = df_tune_mode();
  return df_llvm_compile_with(ks, n, &o, stats, err);
}

const df_tune_config *df_llvm_kernel_config(const df_llvm_jit *j, const kir_kernel *k) {
  if (!j) return NULL;
  uint64_t h = kir_hash(k);
  for (int i = 0; i < j->n; i++)
    if (j->hash[i] == h) return &j->cfg[i];
  return NULL;
}

df_kernel_fn df_llvm_lookup(df_llvm_jit *j, const kir_kernel *k) {
  LLVMOrcExecutorAddress addr = 0;
  char name[64];
  symbol_of(k, name, sizeof name);
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, name);
  if (e) {
    char *m = LLVMGetErrorMessage(e);
    LLVMDisposeErrorMessage(m);
    return NULL;
  }
  return (df_kernel_fn)(uintptr_t)addr;
}

void df_llvm_free(df_llvm_jit *j) {
  if (!j) return;
  if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
  free(j->hash);
  free(j->cfg);
  free(j);
}

#else /* no LLVM in this build */

int df_llvm_available(df_err *err) {
  df_err_set(err, DF_EUNSUPPORTED, "cpu: this dferc was built without LLVM (install llvm-dev and reconfigure)");
  return 0;
}
const char *df_llvm_target_description(void) { return "no llvm"; }
int df_llvm_host_has(const char *feature) {
  (void)feature;
  return 0;
}
df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err) {
  df_llvm_available(err);
  return NULL;
}
df_llvm_jit *df_llvm_compile_with(kir_kernel *const *ks, int n, const df_llvm_options *o, df_llvm_stats *stats,
                                  df_err *err) {
  df_llvm_available(err);
  return NULL;
}
df_kernel_fn df_llvm_lookup(df_llvm_jit *j, const kir_kernel *k) { return NULL; }
const df_tune_config *df_llvm_kernel_config(const df_llvm_jit *j, const kir_kernel *k) { return NULL; }
void df_llvm_free(df_llvm_jit *j) {}

#endif

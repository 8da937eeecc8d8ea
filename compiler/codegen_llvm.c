/*
** codegen_llvm.c -- see codegen_llvm.h.
**
** Loops become header/body/latch blocks with the loop variable in an
** alloca (mem2reg turns it into a phi); expressions are evaluated where a
** statement uses them (GVN and LICM hoist what is invariant); the O3
** pipeline with the host's features vectorises the VECTOR loops (with
** AVX-512 when the CPU has it: functions prefer 512-bit vectors).
*/
#include "config.h"

#include "compiler/codegen_llvm.h"
#include "compiler/llvm_math.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
  return t == DF_BOOL ? LLVMInt1TypeInContext(E->ctx) : ty(E, t);
}

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
    return a < b2 ? LLVMBuildFPExt(E->b, v, tt, "") : a > b2 ? LLVMBuildFPTrunc(E->b, v, tt, "") : v;
  }
  if (ff) return LLVMBuildFPToSI(E->b, v, tt, "");
  if (tf) return from == DF_U8 ? LLVMBuildUIToFP(E->b, v, tt, "") : LLVMBuildSIToFP(E->b, v, tt, "");
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
  for (int i = a; i < b; i++) {
    const kir_stmt *s = &k->stmts[i];
    if (s->kind == KS_FOR || (s->kind == KS_ACC && s->op != DF_OP_ADD)) return 0;
  }
  return 1;
}

/* Mark a loop's back edge with llvm.loop.vectorize.enable: the vectoriser
** may then reorder a floating-point reduction (sum into several partial
** sums), which it never does on its own without fast-math flags (that the
** C API of LLVM 14 cannot set). */
static void force_vectorize(LLVMContextRef ctx, LLVMValueRef br) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(ctx, NULL, 0);
  LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(ctx, "llvm.loop.vectorize.enable", 26),
                           LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(ctx), 1, 0))};
  LLVMMetadataRef ops[2] = {tmp, LLVMMDNodeInContext2(ctx, kv, 2)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(ctx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(tmp, id); /* the loop id refers to itself */
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(ctx, "llvm.loop", 9), LLVMMetadataAsValue(ctx, id));
}

/* Emit one kernel as NAME_body(noalias typed pointers..., start, end) and
** the entry NAME(void **bufs, start, end). */
static int emit_kernel(LLVMContextRef ctx, LLVMModuleRef mod, const kir_kernel *k, const char *sym,
                       df_err *err) {
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
  LLVMAddAttributeAtIndex(body, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ctx, "prefer-vector-width", 19, "512", 3));
  LLVMAddAttributeAtIndex(body, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ctx, "min-legal-vector-width", 22, "512", 3));
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
  int depth = 0;
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
      if (L->flags & KF_REDUCE && sums_only(k, L->first + 1, si)) force_vectorize(ctx, br);
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
      LLVMValueRef p = LLVMBuildInBoundsGEP2(E.b, ty(&E, dt), E.bufs[s->buf], &idx, 1, "");
      LLVMBuildStore(E.b, v, p);
      break;
    }
    case KS_TILE_DOT:
      break;
    }
  }
  LLVMBuildRetVoid(E.b);

  /* the entry: unpack the buffer array */
  LLVMTypeRef i8p = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
  LLVMTypeRef et[3] = {LLVMPointerType(i8p, 0), i64, i64};
  LLVMValueRef fn = LLVMAddFunction(mod, sym, LLVMFunctionType(vt, et, 3, 0));
  LLVMPositionBuilderAtEnd(E.b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef *args = calloc((size_t)nb + 2, sizeof *args);
  for (int i = 0; args && i < nb; i++) {
    LLVMValueRef ix = LLVMConstInt(i64, (unsigned long long)i, 0);
    LLVMValueRef slotp = LLVMBuildInBoundsGEP2(E.b, i8p, LLVMGetParam(fn, 0), &ix, 1, "");
    LLVMValueRef raw = LLVMBuildLoad2(E.b, i8p, slotp, "");
    args[i] = LLVMBuildBitCast(E.b, raw, pt[i], "");
  }
  int rc = 0;
  if (!args) {
    rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  } else {
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
#define DF_CODEGEN_VERSION "llvm-cg-3"

static void symbol_of(const kir_kernel *k, char *out, size_t n) {
  snprintf(out, n, "dferc_%016llx", (unsigned long long)kir_hash(k));
}

/* Compile one kernel to object code: a module of its own, verified,
** optimised with O3 for the host, dumped when asked. */
static int compile_object(const kir_kernel *k, const char *sym, LLVMTargetMachineRef tm, const char *dump_dir,
                          LLVMMemoryBufferRef *obj, df_err *err) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(k->name, ctx);
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMSetTarget(mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, td);
  LLVMDisposeTargetData(td);
  int rc = emit_kernel(ctx, mod, k, sym, err);
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

df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err) {
  pthread_once(&init_once, init_llvm);
  double t0 = now_s();
  df_llvm_stats st = {0, 0, 0, 0};
  df_llvm_jit *j = calloc(1, sizeof *j);
  LLVMTargetMachineRef tm = j ? host_tm(err) : NULL, jtm = tm ? host_tm(err) : NULL;
  int rc = 0;
  if (!j || !tm || !jtm) {
    rc = err && err->code ? err->code : df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  } else {
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    jtm = NULL;
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, jb);
    if (e) {
      rc = llvm_error(err, e, "creating the JIT");
      j->jit = NULL;
    }
    if (rc == 0) {
      LLVMOrcDefinitionGeneratorRef gen;
      e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
      if (e) rc = llvm_error(err, e, "process symbols");
      else LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
    }
  }
  char toolchain[64];
  snprintf(toolchain, sizeof toolchain, "llvm %s", LLVM_VERSION_STRING);
  uint64_t *done = calloc((size_t)n + 1, sizeof *done);
  int ndone = 0;
  if (!done && rc == 0) rc = df_err_set(err, DF_ENOMEM, "llvm: out of memory");
  for (int i = 0; i < n && rc == 0; i++) {
    uint64_t h = kir_hash(ks[i]);
    int seen = 0;
    for (int d = 0; d < ndone && !seen; d++) seen = done[d] == h;
    if (seen) continue;
    done[ndone++] = h;
    st.kernels++;
    char sym[64], hex[24];
    symbol_of(ks[i], sym, sizeof sym);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    df_cache_key key = {0};
    key.ir_hash = hex;
    key.backend = "cpu";
    key.device = "host";
    key.arch = host_features ? host_features : "";
    key.toolchain = toolchain;
    key.dferc_version = PACKAGE_VERSION;
    key.options = DF_CODEGEN_VERSION " O3";
    key.tuning = "";
    LLVMMemoryBufferRef obj = NULL;
    df_cache_entry ent = {0};
    if (cache && !dump_dir && df_cache_get(cache, &key, &ent, NULL) == 1) {
      obj = LLVMCreateMemoryBufferWithMemoryRangeCopy((const char *)ent.blob, ent.size, sym);
      df_cache_entry_free(&ent);
      st.hits++;
    } else {
      rc = compile_object(ks[i], sym, tm, dump_dir, &obj, err);
      if (rc) break;
      st.misses++;
      if (cache)
        df_cache_put(cache, &key, LLVMGetBufferStart(obj), LLVMGetBufferSize(obj), ks[i]->name, "", NULL);
    }
    LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), obj);
    if (e) rc = llvm_error(err, e, "adding an object");
  }
  free(done);
  if (tm) LLVMDisposeTargetMachine(tm);
  if (jtm) LLVMDisposeTargetMachine(jtm);
  st.seconds = now_s() - t0;
  if (stats) *stats = st;
  if (rc) {
    df_llvm_free(j);
    return NULL;
  }
  return j;
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
  free(j);
}

#else /* no LLVM in this build */

int df_llvm_available(df_err *err) {
  df_err_set(err, DF_EUNSUPPORTED, "cpu: this dferc was built without LLVM (install llvm-dev and reconfigure)");
  return 0;
}
const char *df_llvm_target_description(void) { return "no llvm"; }
df_llvm_jit *df_llvm_compile(kir_kernel *const *ks, int n, const char *dump_dir, df_cache *cache,
                             df_llvm_stats *stats, df_err *err) {
  df_llvm_available(err);
  return NULL;
}
df_kernel_fn df_llvm_lookup(df_llvm_jit *j, const kir_kernel *k) { return NULL; }
void df_llvm_free(df_llvm_jit *j) {}

#endif

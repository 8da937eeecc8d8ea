/*
** llvm_math.c -- see llvm_math.h.
**
** exp: x = n ln2 + r with n = rint(x / ln2) and r reduced in two steps
** (Cody and Waite), exp(r) by a polynomial (float32: the minimax
** polynomial of the Cephes library's expf; float64: Taylor terms to r^13,
** |r| <= ln2/2), times 2^n built in the exponent bits as 2^h 2^(n-h) so
** that both factors stay normal down to the subnormal results.
** erf (float32): x (P(x^2) / Q(x^2)), degrees 13 / 8, on x clamped to [-4, 4].
*/
#include "config.h"

#if DFERC_HAVE_LLVM

#include "compiler/llvm_math.h"

#include <string.h>

typedef struct {
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef t;
  int f64;
} mctx;

static LLVMValueRef call1(mctx *m, const char *name, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(m->mod, id, &m->t, 1);
  LLVMTypeRef fty = LLVMIntrinsicGetType(LLVMGetModuleContext(m->mod), id, &m->t, 1);
  return LLVMBuildCall2(m->b, fty, f, args, (unsigned)n, "");
}

static LLVMValueRef cst(mctx *m, double v) { return LLVMConstReal(m->t, v); }

static LLVMValueRef fma3(mctx *m, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return call1(m, "llvm.fma", args, 3);
}

static LLVMValueRef clamp(mctx *m, LLVMValueRef x, double lo, double hi) {
  LLVMValueRef a[2] = {x, cst(m, lo)};
  LLVMValueRef y = call1(m, "llvm.maxnum", a, 2); /* NaN becomes lo: fixed up by the caller */
  LLVMValueRef c[2] = {y, cst(m, hi)};
  return call1(m, "llvm.minnum", c, 2);
}

/* Horner: c[0] x^(n-1) + ... + c[n-1] */
static LLVMValueRef horner(mctx *m, LLVMValueRef x, const double *c, int n) {
  LLVMValueRef y = cst(m, c[0]);
  for (int i = 1; i < n; i++) y = fma3(m, y, x, cst(m, c[i]));
  return y;
}

static int setup(mctx *m, LLVMModuleRef mod, LLVMBuilderRef b, LLVMValueRef x) {
  m->mod = mod;
  m->b = b;
  m->t = LLVMTypeOf(x);
  LLVMTypeKind k = LLVMGetTypeKind(m->t);
  if (k != LLVMFloatTypeKind && k != LLVMDoubleTypeKind) return -1;
  m->f64 = k == LLVMDoubleTypeKind;
  return 0;
}

LLVMValueRef df_llvm_exp(LLVMModuleRef mod, LLVMBuilderRef b, LLVMValueRef x) {
  mctx m;
  if (setup(&m, mod, b, x)) return NULL;
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  /* beyond these bounds the result is already inf, or 0 after rounding */
  LLVMValueRef xc = m.f64 ? clamp(&m, x, -746.0, 710.0) : clamp(&m, x, -104.0, 89.0);
  LLVMValueRef nr = LLVMBuildFMul(b, xc, cst(&m, 1.4426950408889634074), "");
  LLVMValueRef n = call1(&m, "llvm.rint", &nr, 1);
  LLVMValueRef r, y;
  if (m.f64) {
    r = fma3(&m, n, cst(&m, -6.93145751953125e-1), xc);
    r = fma3(&m, n, cst(&m, -1.42860682030941723212e-6), r);
    double c[14];
    double f = 1.0;
    for (int k = 1; k <= 13; k++) f *= k; /* 13! */
    for (int i = 0, k = 13; i < 14; i++, k--) {
      c[i] = 1.0 / f;
      if (k > 0) f /= k;
    }
    y = horner(&m, r, c, 14);
  } else {
    r = fma3(&m, n, cst(&m, -0.693359375), xc);
    r = fma3(&m, n, cst(&m, 2.12194440e-4), r);
    static const double c[6] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
    LLVMValueRef p = horner(&m, r, c, 6);
    y = LLVMBuildFAdd(b, fma3(&m, p, LLVMBuildFMul(b, r, r, ""), r), cst(&m, 1.0), "");
  }
  /* 2^n = 2^h 2^(n-h), h = n >> 1: each factor a normal number */
  LLVMTypeRef it = m.f64 ? LLVMInt64TypeInContext(ctx) : LLVMInt32TypeInContext(ctx);
  unsigned shift = m.f64 ? 52 : 23;
  long long bias = m.f64 ? 1023 : 127;
  LLVMValueRef ni = LLVMBuildFPToSI(b, n, it, "");
  LLVMValueRef h = LLVMBuildAShr(b, ni, LLVMConstInt(it, 1, 0), "");
  LLVMValueRef e1 = LLVMBuildAdd(b, h, LLVMConstInt(it, (unsigned long long)bias, 0), "");
  LLVMValueRef e2 = LLVMBuildAdd(b, LLVMBuildSub(b, ni, h, ""), LLVMConstInt(it, (unsigned long long)bias, 0), "");
  LLVMValueRef s1 = LLVMBuildBitCast(b, LLVMBuildShl(b, e1, LLVMConstInt(it, shift, 0), ""), m.t, "");
  LLVMValueRef s2 = LLVMBuildBitCast(b, LLVMBuildShl(b, e2, LLVMConstInt(it, shift, 0), ""), m.t, "");
  LLVMValueRef res = LLVMBuildFMul(b, LLVMBuildFMul(b, y, s1, ""), s2, "");
  LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, x, x, "");
  return LLVMBuildSelect(b, nan, x, res, "");
}

LLVMValueRef df_llvm_widen16(LLVMBuilderRef b, LLVMValueRef v, int half) {
  LLVMContextRef ctx = LLVMGetTypeContext(LLVMTypeOf(v));
  LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx), i32 = LLVMInt32TypeInContext(ctx);
  if (half) return LLVMBuildFPExt(b, LLVMBuildBitCast(b, v, LLVMHalfTypeInContext(ctx), ""), f32, "");
  LLVMValueRef w = LLVMBuildShl(b, LLVMBuildZExt(b, v, i32, ""), LLVMConstInt(i32, 16, 0), "");
  return LLVMBuildBitCast(b, w, f32, "");
}

LLVMValueRef df_llvm_narrow16(LLVMBuilderRef b, LLVMValueRef f, int half) {
  LLVMContextRef ctx = LLVMGetTypeContext(LLVMTypeOf(f));
  LLVMTypeRef i16 = LLVMInt16TypeInContext(ctx), i32 = LLVMInt32TypeInContext(ctx);
  if (half) return LLVMBuildBitCast(b, LLVMBuildFPTrunc(b, f, LLVMHalfTypeInContext(ctx), ""), i16, "");
  LLVMValueRef u = LLVMBuildBitCast(b, f, i32, "");
  LLVMValueRef odd = LLVMBuildAnd(b, LLVMBuildLShr(b, u, LLVMConstInt(i32, 16, 0), ""), LLVMConstInt(i32, 1, 0), "");
  LLVMValueRef r = LLVMBuildAdd(b, LLVMBuildAdd(b, u, LLVMConstInt(i32, 0x7fff, 0), ""), odd, "");
  LLVMValueRef hi = LLVMBuildTrunc(b, LLVMBuildLShr(b, r, LLVMConstInt(i32, 16, 0), ""), i16, "");
  LLVMValueRef qnan = LLVMBuildTrunc(
      b, LLVMBuildOr(b, LLVMBuildLShr(b, u, LLVMConstInt(i32, 16, 0), ""), LLVMConstInt(i32, 0x40, 0), ""), i16, "");
  return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, f, f, ""), qnan, hi, "");
}

LLVMValueRef df_llvm_erf(LLVMModuleRef mod, LLVMBuilderRef b, LLVMValueRef x) {
  mctx m;
  if (setup(&m, mod, b, x) || m.f64) return NULL;
  static const double alpha[7] = {-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                  -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                  -1.60960333262415e-02};
  static const double beta[5] = {-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                 -7.37332916720468e-03, -1.42647390514189e-02};
  LLVMValueRef xc = clamp(&m, x, -4.0, 4.0);
  LLVMValueRef x2 = LLVMBuildFMul(b, xc, xc, "");
  /* x (P / Q), not (x P) / Q: a subnormal x is rounded once */
  LLVMValueRef pq = LLVMBuildFDiv(b, horner(&m, x2, alpha, 7), horner(&m, x2, beta, 5), "");
  LLVMValueRef res = LLVMBuildFMul(b, xc, pq, "");
  LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, x, x, "");
  return LLVMBuildSelect(b, nan, x, res, "");
}

#endif

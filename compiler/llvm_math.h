/*
** llvm_math.h -- transcendental functions built inline as LLVM IR, so that
** the loop vectoriser can widen them (a call to libm's expf or erff stays
** one scalar call per element).
**
** Each builder takes a float or double value (scalar) at the builder's
** insertion point and returns the result of the same type; the module is
** where intrinsic declarations (fma, rint, minnum, maxnum) are added.
** Accuracy, measured against the float64 libm over every float32 input
** (tests/lua/test_llvm_math.lua checks it through the JIT):
**   exp  float32: <= 1.1 ulp, float64: <= 1 ulp; NaN, +-inf, overflow and
**        underflow (to subnormals and zero) as libm.
**   erf  float32: <= 8 ulp (|x| > 1e-30; rational approximation clamped
**        to [-4, 4], where erf is +-1 in float32).  float64 returns NULL:
**        the caller keeps libm's erf for it.
*/
#ifndef DF_LLVM_MATH_H
#define DF_LLVM_MATH_H

#include <llvm-c/Core.h>

LLVMValueRef df_llvm_exp(LLVMModuleRef mod, LLVMBuilderRef b, LLVMValueRef x);

/* The 16-bit float storage formats, held as i16 in memory and computed
** on as float32: widen a loaded i16 (bf16: the high half of a float32;
** f16: IEEE half), and narrow a float32 to the i16 to store, rounding to
** nearest even (a NaN stays a quiet NaN), as compiler/dtype.c does.
** `half` is 1 for f16, 0 for bf16. */
LLVMValueRef df_llvm_widen16(LLVMBuilderRef b, LLVMValueRef v, int half);
LLVMValueRef df_llvm_narrow16(LLVMBuilderRef b, LLVMValueRef f, int half);
LLVMValueRef df_llvm_erf(LLVMModuleRef mod, LLVMBuilderRef b, LLVMValueRef x);

#endif

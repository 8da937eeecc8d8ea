/*
** cuda_api.h -- the CUDA driver and cuBLAS functions the cuda device uses,
** as tables of pointers filled by dlopen/dlsym at run time, so that dferc
** builds against the toolkit's headers alone and starts on machines
** without a driver, a GPU or cuBLAS.
**
** Each function is listed once (an X-macro).  Its pointer type is the
** header's own declaration (__typeof__), and the symbol looked up is the
** name the header maps it to (cuMemAlloc -> cuMemAlloc_v2), so the table
** follows the toolkit the build sees.  Only included where the headers are
** (DFERC_HAVE_CUDA).
*/
#ifndef DF_CUDA_API_H
#define DF_CUDA_API_H

#include <cublas_v2.h>
#include <cuda.h>

#include "compiler/err.h"

#define DF_CU_FUNCS(X)                                                                              \
  X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString) X(cuDeviceGetCount)         \
  X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDeviceTotalMem)                     \
  X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) X(cuCtxSetCurrent) X(cuCtxSynchronize)   \
  X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize) X(cuMemAlloc) X(cuMemFree)            \
  X(cuMemAllocHost) X(cuMemFreeHost) X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemcpyHtoDAsync)           \
  X(cuMemcpyDtoHAsync) X(cuMemsetD8Async) X(cuModuleLoadData) X(cuModuleUnload)                     \
  X(cuModuleGetFunction) X(cuLaunchKernel) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord)      \
  X(cuEventSynchronize) X(cuEventElapsedTime) X(cuMemGetInfo)

#define DF_CUBLAS_FUNCS(X)                                                                          \
  X(cublasCreate) X(cublasDestroy) X(cublasGetVersion) X(cublasSetStream) X(cublasSetMathMode)     \
  X(cublasGetStatusName) X(cublasGetStatusString) X(cublasSgemmStridedBatched)                      \
  X(cublasDgemmStridedBatched)

/* A pointer member per function, named as the header maps it. */
#define DF_CUDA_PTR(f) __typeof__(f) *f;
typedef struct df_cu_api { DF_CU_FUNCS(DF_CUDA_PTR) } df_cu_api;
typedef struct df_cublas_api { DF_CUBLAS_FUNCS(DF_CUDA_PTR) } df_cublas_api;
#undef DF_CUDA_PTR

/* Filled by df_cuda_api_load(); valid once it returned 0. */
extern df_cu_api df_cu;
extern df_cublas_api df_cublas;

/* Load libcuda.so.1 and libcublas (once; thread-safe).  0, or an error
** saying in one line which library or symbol is missing
** ("cuda: libcuda.so.1 not found"). */
int df_cuda_api_load(df_err *err);

#endif

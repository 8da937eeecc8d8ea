/*
** cuda_mock.c -- a stand-in for libcuda.so.1, libcublas and libnvrtc that
** runs the cuda device's code on the host, so that runtime/cuda.c (memory
** layout, feeds and outputs, launches, cuBLAS argument mapping, library
** kernels, status block) is tested on machines without a GPU.
**
** Built as one shared object and linked under the three library names
** (tests/sh/test_cuda.sh).  "NVRTC" returns the CUDA C itself as the
** cubin; cuModuleLoadData compiles it as C++ with the host compiler
** ($CXX, default c++) under a header that defines blockIdx & co., and
** cuLaunchKernel runs every thread of the grid in turn, on one host
** thread.  A kernel that synchronises its block (__syncthreads) runs its
** block's threads as coroutines (ucontext) that switch at each barrier;
** __shared__ arrays are static, one block running at a time.  Every
** kernel parameter of dferc's kernels is 8 bytes (a pointer or a long
** long), so a launch passes 64 integer arguments and the kernel reads the
** ones it has.  cuBLAS products are naive
** column-major loops.  Device pointers are host pointers.
**
** This checks what the host code asks of the GPU and what the generated
** code computes, not CUDA itself: races, occupancy and the real
** compilers are the GPU check's (scripts/gpu-check).
*/
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;

/* ------------------------------------------------------------ driver */

CUresult cuInit(unsigned flags) { return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) { *s = r ? "CUDA_ERROR_MOCK" : "CUDA_SUCCESS"; return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) { *s = r ? "mock failure" : "no error"; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }
CUresult cuDeviceGetName(char *name, int len, int d) { snprintf(name, (size_t)len, "dferc mock GPU"); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
  *v = attr == 75 ? 9 : 0; /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, MINOR = 76 */
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { *b = (size_t)1 << 34; return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = *t = (size_t)1 << 34; return 0; }
static int ctx_dummy, stream_dummy;
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) { *ctx = &ctx_dummy; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
CUresult cuCtxSetCurrent(void *ctx) { return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuStreamCreate(void **s, unsigned flags) { *s = &stream_dummy; return 0; }
CUresult cuStreamDestroy_v2(void *s) { return 0; }
CUresult cuStreamSynchronize(void *s) { return 0; }

/* Poison fresh memory: a kernel that reads what nothing wrote shows. */
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  void *m = malloc(n ? n : 1);
  if (!m) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  memset(m, 0xff, n);
  *p = (CUdeviceptr)(uintptr_t)m;
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return 0; }
CUresult cuMemAllocHost_v2(void **p, size_t n) { *p = malloc(n ? n : 1); return *p ? 0 : 2; }
CUresult cuMemFreeHost(void *p) { free(p); return 0; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) { memcpy(d, (void *)(uintptr_t)s, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) { return cuMemcpyHtoD_v2(d, s, n); }
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) { return cuMemcpyDtoH_v2(d, s, n); }
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *st) {
  memset((void *)(uintptr_t)d, v, n);
  return 0;
}

typedef struct mock_fn {
  void (*fn)();
  void (*set)(unsigned, unsigned, unsigned, void (*)(void)); /* the module's mock_set */
  int nparams;
  int syncs; /* its body calls __syncthreads */
  struct mock_fn *next;
} mock_fn;

typedef struct mock_mod {
  void *so;
  char *src;
  char dir[64];
  mock_fn *fns;
} mock_mod;

static const char header[] =
    "#include <math.h>\n#include <string.h>\n"
    "#undef NAN\n#undef INFINITY\n"
    "#define DFERC_HOST 1\n#define __forceinline__ inline\n"
    "#define __global__\n#define __device__\n#define __restrict__ __restrict\n#define __shared__ static\n"
    "struct mock_dim3 { unsigned x, y, z; };\n"
    "static thread_local mock_dim3 blockIdx, threadIdx, blockDim;\n"
    "static void (*mock_sync)(void);\n"
    "#define __syncthreads() mock_sync()\n"
    "extern \"C\" void mock_set(unsigned b, unsigned t, unsigned n, void (*sync)(void)) {\n"
    "  blockIdx.x = b; threadIdx.x = t; blockDim.x = n; mock_sync = sync; }\n"
    "static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }\n"
    "static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }\n"
    "static inline double rsqrt(double x) { return 1.0 / sqrt(x); }\n"
    "static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long c, unsigned long long v) {\n"
    "  unsigned long long o = *p; if (o == c) *p = v; return o; }\n"
    "#line 1 \"dferc_kernels.cu\"\n";

CUresult cuModuleLoadData(void **mod, const void *image) {
  mock_mod *m = calloc(1, sizeof *m);
  if (!m) return 2;
  m->src = strdup((const char *)image);
  snprintf(m->dir, sizeof m->dir, "/tmp/dferc-mock-XXXXXX");
  if (!m->src || !mkdtemp(m->dir)) return 1;
  char path[128], so[128], cmd[512];
  snprintf(path, sizeof path, "%s/k.cc", m->dir);
  snprintf(so, sizeof so, "%s/k.so", m->dir);
  FILE *f = fopen(path, "w");
  if (!f) return 1;
  fputs(header, f);
  fputs(m->src, f);
  fclose(f);
  const char *cxx = getenv("CXX");
  snprintf(cmd, sizeof cmd, "%s -O1 -ffp-contract=off -fPIC -shared -w -o %s %s", cxx && *cxx ? cxx : "c++", so, path);
  if (system(cmd) != 0) {
    fprintf(stderr, "cuda_mock: the kernels did not compile (%s kept)\n", path);
    return 218; /* CUDA_ERROR_INVALID_PTX */
  }
  m->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  unlink(so);
  unlink(path);
  rmdir(m->dir);
  if (!m->so) return 200; /* CUDA_ERROR_INVALID_IMAGE */
  *mod = m;
  return 0;
}

CUresult cuModuleUnload(void *mod) {
  mock_mod *m = mod;
  while (m->fns) {
    mock_fn *n = m->fns->next;
    free(m->fns);
    m->fns = n;
  }
  dlclose(m->so);
  free(m->src);
  free(m);
  return 0;
}

/* The function and its parameter count, read off its definition. */
CUresult cuModuleGetFunction(void **fn, void *mod, const char *name) {
  mock_mod *m = mod;
  char pat[160];
  snprintf(pat, sizeof pat, "void %s(", name);
  const char *p = strstr(m->src, pat);
  void *sym = dlsym(m->so, name);
  if (!p || !sym) return 500; /* CUDA_ERROR_NOT_FOUND */
  int n = 1;
  for (p += strlen(pat); *p && *p != ')'; p++) n += *p == ',';
  /* its body: up to the next kernel */
  const char *next = strstr(p, "__global__");
  const char *sy = strstr(p, "__syncthreads");
  int syncs = sy && (!next || sy < next);
  mock_fn *f = calloc(1, sizeof *f);
  if (!f) return 2;
  *(void **)&f->fn = sym;
  *(void **)&f->set = dlsym(m->so, "mock_set");
  f->nparams = n;
  f->syncs = syncs;
  f->next = m->fns;
  m->fns = f;
  *fn = f;
  return 0;
}

typedef void (*fn64)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                     uint64_t, uint64_t, uint64_t);

long mock_launches; /* for the curious */

/* The threads of one block as coroutines: each runs to its next barrier
** (or its end), then the next; a round ends when all have. */
#define CO_STACK (256 * 1024)
static struct {
  ucontext_t main;
  ucontext_t *ctx;
  char *stacks;
  unsigned char *done;
  unsigned cap, cur, block, bdim;
  mock_fn *f;
  uint64_t *a;
} co;

static void co_sync(void) { swapcontext(&co.ctx[co.cur], &co.main); }

static void call_kernel(mock_fn *f, const uint64_t *a) {
  fn64 k = (fn64)f->fn;
  k(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16],
    a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29], a[30], a[31],
    a[32], a[33], a[34], a[35], a[36], a[37], a[38], a[39], a[40], a[41], a[42], a[43], a[44], a[45], a[46],
    a[47], a[48], a[49], a[50], a[51], a[52], a[53], a[54], a[55], a[56], a[57], a[58], a[59], a[60], a[61],
    a[62], a[63], a[64], a[65]);
}

static void co_thread(void) {
  call_kernel(co.f, co.a);
  co.done[co.cur] = 1;
  swapcontext(&co.ctx[co.cur], &co.main);
}

static int run_block_co(mock_fn *f, uint64_t *a, unsigned b, unsigned bdim) {
  if (bdim > co.cap) {
    free(co.ctx);
    free(co.stacks);
    free(co.done);
    co.ctx = calloc(bdim, sizeof *co.ctx);
    co.stacks = malloc((size_t)bdim * CO_STACK);
    co.done = calloc(bdim, 1);
    if (!co.ctx || !co.stacks || !co.done) return 2;
    co.cap = bdim;
  }
  co.f = f;
  co.a = a;
  co.block = b;
  co.bdim = bdim;
  for (unsigned t = 0; t < bdim; t++) {
    co.done[t] = 0;
    getcontext(&co.ctx[t]);
    co.ctx[t].uc_stack.ss_sp = co.stacks + (size_t)t * CO_STACK;
    co.ctx[t].uc_stack.ss_size = CO_STACK;
    co.ctx[t].uc_link = &co.main;
    makecontext(&co.ctx[t], co_thread, 0);
  }
  for (unsigned left = bdim; left > 0;) {
    left = 0;
    for (unsigned t = 0; t < bdim; t++) {
      if (co.done[t]) continue;
      co.cur = t;
      f->set(b, t, bdim, co_sync);
      swapcontext(&co.main, &co.ctx[t]);
      left += !co.done[t];
    }
  }
  return 0;
}

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shmem, void *stream, void **params, void **extra) {
  mock_fn *f = fn;
  if (f->nparams > 66 || gy != 1 || gz != 1 || by != 1 || bz != 1 || bx == 0 || bx > 1024 || gx == 0)
    return 1; /* CUDA_ERROR_INVALID_VALUE */
  uint64_t a[66] = {0};
  for (int i = 0; i < f->nparams; i++) memcpy(&a[i], params[i], 8);
  if (!f->set) return 1;
  for (unsigned b = 0; b < gx; b++) {
    if (f->syncs) {
      if (run_block_co(f, a, b, bx)) return 2;
      continue;
    }
    for (unsigned t = 0; t < bx; t++) {
      f->set(b, t, bx, co_sync);
      call_kernel(f, a);
    }
  }
  mock_launches++;
  return 0;
}

typedef struct mock_event { double t; } mock_event;
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
CUresult cuEventCreate(void **e, unsigned flags) { *e = calloc(1, sizeof(mock_event)); return *e ? 0 : 2; }
CUresult cuEventDestroy_v2(void *e) { free(e); return 0; }
CUresult cuEventRecord(void *e, void *s) { ((mock_event *)e)->t = now(); return 0; }
CUresult cuEventSynchronize(void *e) { return 0; }
CUresult cuEventElapsedTime_v2(float *ms, void *a, void *b) {
  *ms = (float)((((mock_event *)b)->t - ((mock_event *)a)->t) * 1e3);
  return 0;
}

/* ------------------------------------------------------------ cuBLAS */

static int blas_dummy;
int cublasCreate_v2(void **h) { *h = &blas_dummy; return 0; }
int cublasDestroy_v2(void *h) { return 0; }
int cublasGetVersion_v2(void *h, int *v) { *v = 130000; return 0; }
int cublasSetStream_v2(void *h, void *s) { return 0; }
int cublasSetMathMode(void *h, int mode) { return 0; }
const char *cublasGetStatusName(int s) { return s ? "CUBLAS_STATUS_MOCK" : "CUBLAS_STATUS_SUCCESS"; }
const char *cublasGetStatusString(int s) { return s ? "mock failure" : "success"; }

/* Column-major C = op(A) op(B), batched with strides; CUBLAS_OP_N = 0. */
#define GEMM(NAME, T)                                                                                          \
  int NAME(void *h, int ta, int tb, int m, int n, int k, const T *alpha, const T *A, int lda, long long sA,      \
           const T *B, int ldb, long long sB, const T *beta, T *C, int ldc, long long sC, int count) {           \
    if (m < 0 || n < 0 || k < 0 || lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m || lda < 1 || ldb < 1) \
      return 7; /* CUBLAS_STATUS_INVALID_VALUE */                                                             \
    for (int b = 0; b < count; b++)                                                                           \
      for (int j = 0; j < n; j++)                                                                             \
        for (int i = 0; i < m; i++) {                                                                         \
          T s = 0;                                                                                            \
          for (int l = 0; l < k; l++) {                                                                       \
            T x = ta ? A[b * sA + l + (long long)i * lda] : A[b * sA + i + (long long)l * lda];               \
            T y = tb ? B[b * sB + j + (long long)l * ldb] : B[b * sB + l + (long long)j * ldb];               \
            s += x * y;                                                                                       \
          }                                                                                                   \
          C[b * sC + i + (long long)j * ldc] = *alpha * s + (*beta != 0 ? *beta * C[b * sC + i + (long long)j * ldc] : 0); \
        }                                                                                                     \
    return 0;                                                                                                 \
  }
GEMM(cublasSgemmStridedBatched, float)
GEMM(cublasDgemmStridedBatched, double)

/* ------------------------------------------------------------ NVRTC */

typedef struct mock_prog { char *src; } mock_prog;
int nvrtcVersion(int *maj, int *min) { *maj = 13; *min = 0; return 0; }
int nvrtcCreateProgram(mock_prog **p, const char *src, const char *name, int n, const char *const *h,
                       const char *const *i) {
  *p = calloc(1, sizeof **p);
  if (!*p || !((*p)->src = strdup(src))) return 1;
  return 0;
}
int nvrtcCompileProgram(mock_prog *p, int n, const char *const *opts) { return 0; }
int nvrtcGetProgramLogSize(mock_prog *p, size_t *n) { *n = 1; return 0; }
int nvrtcGetProgramLog(mock_prog *p, char *log) { log[0] = 0; return 0; }
int nvrtcGetCUBINSize(mock_prog *p, size_t *n) { *n = strlen(p->src) + 1; return 0; }
int nvrtcGetCUBIN(mock_prog *p, char *out) { memcpy(out, p->src, strlen(p->src) + 1); return 0; }
int nvrtcDestroyProgram(mock_prog **p) {
  free((*p)->src);
  free(*p);
  *p = NULL;
  return 0;
}
const char *nvrtcGetErrorString(int r) { return r ? "NVRTC_ERROR_MOCK" : "NVRTC_SUCCESS"; }

/*
** cuda.c -- the `cuda` device: a graph fused into Kernel IR kernels
** (compiler/schedule), printed as CUDA C (compiler/codegen_cuda), compiled
** by NVRTC for the GPU's compute capability, run on one stream; dense
** products through cuBLAS in float32 (no TF32), library steps (mask_index,
** scatter_add, rand) as kernels of their own.
**
** Run-time layout: ONE device allocation per plan holding, at offsets
** fixed at compile time, the memory plan's arena, the constants, every
** feed (inputs, parameters, optimiser state) and a status block that the
** library kernels write run-time check failures into.  A run copies the
** feeds into a pinned staging buffer and up with one asynchronous copy,
** runs every step on the stream with no host round trip, then copies the
** outputs and the status block back with one synchronisation.
**
** Debugging and measuring: DFERC_CUDA_SYNC=1 synchronises after every
** step and checks it; DFERC_PROFILE=1 times every step with CUDA events
** and prints the slowest steps and kernel families (as the cpu device
** does); DFERC_PROFILE_OUT=FILE also writes them as JSON (for `dferc
** bench`).  DFERC_CUDA_DEVICE=N picks the GPU (default 0).
**
** Every driver, NVRTC and cuBLAS call is checked; an error names the call,
** the library's error name and text, and this file's line.
*/
#include "config.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "compiler/codegen_cuda.h"
#include "compiler/schedule.h"
#include "runtime/cuda_api.h"
#include "runtime/device.h"
#include "runtime/nvrtc.h"
#include "runtime/profile.h"

/* Bumped whenever codegen_cuda.c or this file changes the code a plan
** compiles to: part of the kernel cache key. */
#define DF_CUDA_CG_VERSION "cuda-cg-1"

/* ------------------------------------------------------------ loading */

df_cu_api df_cu;
df_cublas_api df_cublas;

#define DF_STR_(x) #x
#define DF_STR(x) DF_STR_(x)

static struct {
  pthread_once_t once;
  int rc;
  char why[512];
  void *cuda, *cublas;
} api = {PTHREAD_ONCE_INIT};

/* The symbol the header names (cuMemAlloc_v2), else the plain name
** (an older driver without a newer version of the same call). */
static void *sym2(void *lib, const char *mapped, const char *plain) {
  void *p = dlsym(lib, mapped);
  return p ? p : dlsym(lib, plain);
}

static void *open_first(const char *const *names, int n) {
  void *h = NULL;
  for (int i = 0; i < n && !h; i++)
    if (names[i] && names[i][0]) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  return h;
}

static void api_load(void) {
  const char *cu[] = {"libcuda.so.1", "libcuda.so"};
  api.cuda = open_first(cu, 2);
  if (!api.cuda) {
    snprintf(api.why, sizeof api.why, "cuda: libcuda.so.1 not found");
    api.rc = DF_EUNSUPPORTED;
    return;
  }
#define LOAD_CU(f)                                                                          \
  if (!(*(void **)&df_cu.f = sym2(api.cuda, DF_STR(f), #f))) {                               \
    snprintf(api.why, sizeof api.why, "cuda: libcuda.so.1 lacks %s (driver too old)", DF_STR(f)); \
    api.rc = DF_EUNSUPPORTED;                                                               \
    return;                                                                                 \
  }
  DF_CU_FUNCS(LOAD_CU)
#undef LOAD_CU
  const char *home = getenv("CUDA_HOME");
  char p1[600] = "", p2[600] = "";
  if (home) snprintf(p1, sizeof p1, "%s/lib64/libcublas.so", home);
#ifdef DFERC_CUDA_HOME
  snprintf(p2, sizeof p2, "%s/lib64/libcublas.so", DFERC_CUDA_HOME);
#endif
  const char *bl[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12", p1, p2,
                      "/usr/local/cuda/lib64/libcublas.so"};
  api.cublas = open_first(bl, (int)(sizeof bl / sizeof bl[0]));
  if (!api.cublas) {
    snprintf(api.why, sizeof api.why, "cuda: libcublas.so not found (install the CUDA toolkit or set CUDA_HOME)");
    api.rc = DF_EUNSUPPORTED;
    return;
  }
#define LOAD_BLAS(f)                                                                        \
  if (!(*(void **)&df_cublas.f = sym2(api.cublas, DF_STR(f), #f))) {                         \
    snprintf(api.why, sizeof api.why, "cuda: libcublas.so lacks %s", DF_STR(f));             \
    api.rc = DF_EUNSUPPORTED;                                                               \
    return;                                                                                 \
  }
  DF_CUBLAS_FUNCS(LOAD_BLAS)
#undef LOAD_BLAS
}

int df_cuda_api_load(df_err *err) {
  pthread_once(&api.once, api_load);
  if (api.rc) return df_err_set(err, api.rc, "%s", api.why);
  return 0;
}

/* ------------------------------------------------------------ checked calls */

static int cu_error(df_err *err, CUresult r, const char *call, int line) {
  const char *name = NULL, *text = NULL;
  if (df_cu.cuGetErrorName) df_cu.cuGetErrorName(r, &name);
  if (df_cu.cuGetErrorString) df_cu.cuGetErrorString(r, &text);
  char c[120];
  snprintf(c, sizeof c, "%s", call);
  char *paren = strchr(c, '(');
  if (paren) *paren = 0; /* the function, not its arguments */
  return df_err_set(err, r == CUDA_ERROR_OUT_OF_MEMORY ? DF_ENOMEM : DF_ERUNTIME, "cuda: %s: %s: %s (%s:%d)", c,
                    name ? name : "CUDA_ERROR", text ? text : "unknown error", __FILE__, line);
}

static int cublas_error(df_err *err, cublasStatus_t r, const char *call, int line) {
  char c[120];
  snprintf(c, sizeof c, "%s", call);
  char *paren = strchr(c, '(');
  if (paren) *paren = 0;
  return df_err_set(err, DF_ERUNTIME, "cuda: %s: %s: %s (%s:%d)", c,
                    df_cublas.cublasGetStatusName ? df_cublas.cublasGetStatusName(r) : "CUBLAS_STATUS",
                    df_cublas.cublasGetStatusString ? df_cublas.cublasGetStatusString(r) : "", __FILE__, line);
}

/* In a function with `int rc` and a `done:` label. */
#define CU_CHECK(call)                                          \
  do {                                                          \
    CUresult r_ = (call);                                       \
    if (r_ != CUDA_SUCCESS) {                                   \
      rc = cu_error(err, r_, #call, __LINE__);                  \
      goto done;                                                \
    }                                                           \
  } while (0)
#define CUBLAS_CHECK(call)                                      \
  do {                                                          \
    cublasStatus_t r_ = (call);                                 \
    if (r_ != CUBLAS_STATUS_SUCCESS) {                          \
      rc = cublas_error(err, r_, #call, __LINE__);              \
      goto done;                                                \
    }                                                           \
  } while (0)

/* ------------------------------------------------------------ the GPU */

static struct {
  pthread_once_t once;
  int rc;
  char why[1024];
  CUdevice dev;
  CUcontext ctx;
  CUstream stream;
  cublasHandle_t blas;
  int arch; /* compute capability major * 10 + minor */
  char name[128];
  char toolchain[128];
  int driver;
  int debug_sync;
} gpu = {PTHREAD_ONCE_INIT};

static void gpu_init(void) {
  df_err e = {0}, *err = &e;
  int rc = 0;
  if (df_cuda_api_load(err)) goto done;
  CUresult r = df_cu.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char *name = NULL, *text = NULL;
    df_cu.cuGetErrorName(r, &name);
    df_cu.cuGetErrorString(r, &text);
    df_err_set(err, DF_EUNSUPPORTED, "cuda: no CUDA device (cuInit: %s: %s)", name ? name : "?",
               text ? text : "?");
    goto done;
  }
  int count = 0, ordinal = 0;
  CU_CHECK(df_cu.cuDeviceGetCount(&count));
  const char *env = getenv("DFERC_CUDA_DEVICE");
  if (env && *env) ordinal = atoi(env);
  if (count == 0) {
    df_err_set(err, DF_EUNSUPPORTED, "cuda: no CUDA device (cuDeviceGetCount: 0 devices)");
    goto done;
  }
  if (ordinal < 0 || ordinal >= count) {
    df_err_set(err, DF_EUNSUPPORTED, "cuda: DFERC_CUDA_DEVICE=%s but there are %d devices", env, count);
    goto done;
  }
  int major = 0, minor = 0;
  CU_CHECK(df_cu.cuDeviceGet(&gpu.dev, ordinal));
  CU_CHECK(df_cu.cuDeviceGetName(gpu.name, (int)sizeof gpu.name, gpu.dev));
  CU_CHECK(df_cu.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, gpu.dev));
  CU_CHECK(df_cu.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, gpu.dev));
  CU_CHECK(df_cu.cuDriverGetVersion(&gpu.driver));
  gpu.arch = major * 10 + minor;
  if (df_nvrtc_available(err)) goto done;
  snprintf(gpu.toolchain, sizeof gpu.toolchain, "%s; driver %d.%d", df_nvrtc_version(), gpu.driver / 1000,
           (gpu.driver % 1000) / 10);
  CU_CHECK(df_cu.cuDevicePrimaryCtxRetain(&gpu.ctx, gpu.dev));
  CU_CHECK(df_cu.cuCtxSetCurrent(gpu.ctx));
  CU_CHECK(df_cu.cuStreamCreate(&gpu.stream, CU_STREAM_NON_BLOCKING));
  CUBLAS_CHECK(df_cublas.cublasCreate(&gpu.blas));
  CUBLAS_CHECK(df_cublas.cublasSetStream(gpu.blas, (cudaStream_t)gpu.stream));
  /* float32 products in float32: no TF32 (DEFAULT_MATH keeps it off
  ** unless asked; PEDANTIC also rules out any reduced-precision path) */
  const char *ped = getenv("DFERC_CUDA_PEDANTIC");
  CUBLAS_CHECK(df_cublas.cublasSetMathMode(gpu.blas, ped && *ped && strcmp(ped, "0") != 0 ? CUBLAS_PEDANTIC_MATH
                                                                                          : CUBLAS_DEFAULT_MATH));
  const char *sync = getenv("DFERC_CUDA_SYNC");
  gpu.debug_sync = sync && *sync && strcmp(sync, "0") != 0;
done:
  (void)rc;
  if (e.code) {
    gpu.rc = e.code;
    snprintf(gpu.why, sizeof gpu.why, "%s", e.msg);
  }
}

/* The GPU, initialised once and current on this thread; 0 or the error. */
static int gpu_ready(df_err *err) {
  pthread_once(&gpu.once, gpu_init);
  if (gpu.rc) return df_err_set(err, gpu.rc, "%s", gpu.why);
  CUresult r = df_cu.cuCtxSetCurrent(gpu.ctx);
  if (r != CUDA_SUCCESS) return cu_error(err, r, "cuCtxSetCurrent", __LINE__);
  return 0;
}

static int cuda_available(df_err *err) { return gpu_ready(err); }

static int cuda_supports(df_op op) { return df_op_info(op) != NULL; }

/* ------------------------------------------------------------ plans */

struct df_plan {
  df_schedule *s;
  CUmodule mod;
  CUfunction *fns;      /* per step: KERNEL and LIB steps (a LIB step's first part) */
  CUfunction *fns2;     /* per step: a LIB step's second part (attention_grad) */
  size_t *off;          /* per slot: byte offset in the device allocation */
  size_t feed_off, feed_bytes; /* feeds: one contiguous region */
  size_t status_off, scratch_off, total;
  size_t *out_off;      /* per output: offset in the pinned output region */
  size_t out_bytes;
  CUdeviceptr mem;      /* the one device allocation (0 until the first run) */
  unsigned char *pinned;/* feed_bytes + out_bytes + the status block */
  int consts_ready;
  int check_finite;
  CUevent *ev;          /* DFERC_PROFILE: nsteps + 1 events */
  df_plan_stats st;
  /* resident state (df_device.keep): the kept host tensors (referenced),
  ** the feed slot holding each on the device, and which copies are
  ** current; both are, or exactly one is */
  struct kept {
    df_tensor *t;
    int slot;                 /* -1 until a run binds it to a feed */
    unsigned char dev_ok, host_ok;
  } *kept;
  int nkept, cap_kept;
  int *slot_kept;       /* per slot: the kept tensor last bound to it, or -1 */
  int first_in_place;   /* the first step writing an output into its feed, or -1 */
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t slot_bytes(const df_slot *sl) { return (size_t)sl->numel * df_dtype_size(sl->dtype); }

static int cuda_sync(df_plan *p, int host_writes, df_err *err);

static void cuda_plan_free(df_plan *p) {
  if (!p) return;
  if (p->nkept) {
    /* the device's newer values of kept tensors go down first */
    df_err e = {0};
    if (cuda_sync(p, 0, &e)) fprintf(stderr, "dferc: %s (freeing a plan; its kept tensors may be stale)\n", e.msg);
    for (int i = 0; i < p->nkept; i++) df_tensor_unref(p->kept[i].t);
  }
  free(p->kept);
  free(p->slot_kept);
  if (gpu.ctx && df_cu.cuCtxSetCurrent(gpu.ctx) == CUDA_SUCCESS) {
    if (p->mem || p->ev) df_cu.cuStreamSynchronize(gpu.stream);
    if (p->ev)
      for (int i = 0; i <= p->s->nsteps; i++)
        if (p->ev[i]) df_cu.cuEventDestroy(p->ev[i]);
    if (p->mod) df_cu.cuModuleUnload(p->mod);
    if (p->mem) df_cu.cuMemFree(p->mem);
    if (p->pinned) df_cu.cuMemFreeHost(p->pinned);
  }
  free(p->ev);
  free(p->fns);
  free(p->fns2);
  free(p->off);
  free(p->out_off);
  df_schedule_free(p->s);
  free(p);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void write_file(const char *dir, const char *name, const char *ext, const char *data, size_t n) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

/* --dump: each generated kernel's CUDA C on its own (<kernel name>.cu)
** and the plan's whole translation unit, library kernels included. */
static void dump_sources(const df_schedule *s, const char *dir, const char *all, uint64_t h) {
  for (int i = 0; i < s->nsteps; i++) {
    if (s->steps[i].kind != DF_STEP_KERNEL) continue;
    char *one = df_cuda_source(&s->steps[i].kernel, 1);
    if (one) write_file(dir, s->steps[i].kernel->name, "cu", one, strlen(one));
    free(one);
  }
  char name[64];
  snprintf(name, sizeof name, "dferc_plan_%016llx", (unsigned long long)h);
  write_file(dir, name, "cu", all, strlen(all));
}

/* The cubin of a plan's source: from the kernel cache, else NVRTC (and
** stored).  The key is the source's hash with the device, the arch and
** the NVRTC and driver versions. */
static int plan_cubin(df_plan *p, const char *src, uint64_t h, void **cubin, size_t *size, df_err *err) {
  char hex[24], arch[16];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  snprintf(arch, sizeof arch, "sm_%d", gpu.arch);
  df_cache_key key = {0};
  key.ir_hash = hex;
  key.backend = "cuda";
  key.device = gpu.name;
  key.arch = arch;
  key.toolchain = gpu.toolchain;
  key.dferc_version = PACKAGE_VERSION;
  key.options = DF_CUDA_CG_VERSION " --fmad=false";
  key.tuning = "";
  df_cache *cache = df_dump_dir() ? NULL : df_kernel_cache();
  df_cache_entry ent = {0};
  if (cache && df_cache_get(cache, &key, &ent, NULL) == 1) {
    *cubin = ent.blob;
    *size = ent.size;
    ent.blob = NULL;
    df_cache_entry_free(&ent);
    p->st.cache_hits++;
    return 0;
  }
  int rc = df_nvrtc_compile(src, "dferc_kernels.cu", gpu.arch, cubin, size, err);
  if (rc) return rc;
  p->st.cache_misses++;
  if (cache) df_cache_put(cache, &key, *cubin, *size, "", "", NULL);
  return 0;
}

/* Device offsets: the arena at 0, then constants, feeds (contiguous, so
** that one copy moves them all), and the status block. */
static int plan_layout(df_plan *p, df_err *err) {
  df_schedule *s = p->s;
  p->off = calloc((size_t)s->nslots + 1, sizeof *p->off);
  p->out_off = calloc((size_t)s->n_out + 1, sizeof *p->out_off);
  p->slot_kept = malloc(((size_t)s->nslots + 1) * sizeof *p->slot_kept);
  if (!p->off || !p->out_off || !p->slot_kept) return df_err_set(err, DF_ENOMEM, "cuda: out of memory");
  for (int i = 0; i < s->nslots; i++) p->slot_kept[i] = -1;
  size_t at = align64(s->arena_bytes);
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].kind == DF_SLOT_ARENA) p->off[i] = s->slots[i].offset;
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].kind == DF_SLOT_CONST) {
      p->off[i] = at;
      at += align64(slot_bytes(&s->slots[i]));
    }
  p->feed_off = at;
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].kind == DF_SLOT_FEED) {
      p->off[i] = at;
      at += align64(slot_bytes(&s->slots[i]));
    }
  p->feed_bytes = at - p->feed_off;
  p->status_off = at;
  at += 64;
  size_t scratch = 0; /* library kernels' scratch, one region for all */
  for (int i = 0; i < s->nsteps; i++)
    if (s->steps[i].kind == DF_STEP_LIB && df_cuda_lib_scratch(s, i) > scratch) scratch = df_cuda_lib_scratch(s, i);
  p->scratch_off = at;
  p->total = at + align64(scratch);
  for (int i = 0; i < s->n_out; i++) {
    p->out_off[i] = p->out_bytes;
    p->out_bytes += align64(slot_bytes(&s->slots[s->out_slots[i]]));
  }
  return 0;
}

static int first_in_place_step(const df_schedule *s);

static df_plan *cuda_compile(const df_graph *g, const df_node_id *outputs, int n_out, df_err *err) {
  if (gpu_ready(err)) return NULL;
  double t0 = now_s();
  df_plan *p = calloc(1, sizeof *p);
  if (!p) {
    df_err_set(err, DF_ENOMEM, "cuda: out of memory");
    return NULL;
  }
  int rc = 0;
  void *cubin = NULL;
  size_t size = 0;
  char *src = NULL;
  p->s = df_schedule_build(g, outputs, n_out, err);
  if (!p->s) {
    rc = err && err->code ? err->code : DF_EINVAL;
    goto done;
  }
  df_schedule *s = p->s;
  p->fns = calloc((size_t)s->nsteps + 1, sizeof *p->fns);
  p->fns2 = calloc((size_t)s->nsteps + 1, sizeof *p->fns2);
  if (!p->fns || !p->fns2) {
    rc = df_err_set(err, DF_ENOMEM, "cuda: out of memory");
    goto done;
  }
  if ((rc = plan_layout(p, err))) goto done;
  p->first_in_place = first_in_place_step(s);
  int nfn = 0;
  for (int i = 0; i < s->nsteps; i++) nfn += s->steps[i].kind != DF_STEP_MATMUL;
  if (nfn > 0) {
    src = df_cuda_schedule_source(s, err);
    if (!src) {
      rc = err && err->code ? err->code : DF_ENOMEM;
      goto done;
    }
    uint64_t h = df_cache_fnv1a64(DF_CACHE_FNV_OFFSET, src, strlen(src));
    if (df_dump_dir()) dump_sources(s, df_dump_dir(), src, h);
    if ((rc = plan_cubin(p, src, h, &cubin, &size, err))) goto done;
    CU_CHECK(df_cu.cuModuleLoadData(&p->mod, cubin));
    for (int i = 0; i < s->nsteps; i++) {
      df_step *st = &s->steps[i];
      char sym[96];
      if (st->kind == DF_STEP_KERNEL)
        snprintf(sym, sizeof sym, "dferc_%016llx", (unsigned long long)kir_hash(st->kernel));
      else if (st->kind == DF_STEP_LIB)
        df_cuda_lib_symbol(s, i, 0, sym, sizeof sym);
      else
        continue;
      CU_CHECK(df_cu.cuModuleGetFunction(&p->fns[i], p->mod, sym));
      if (st->kind == DF_STEP_LIB && df_cuda_lib_parts(s, i) > 1) {
        df_cuda_lib_symbol(s, i, 1, sym, sizeof sym);
        CU_CHECK(df_cu.cuModuleGetFunction(&p->fns2[i], p->mod, sym));
      }
    }
  }
  for (const char *q = src; q && (q = strstr(q, "__global__")); q++) p->st.kernels++;
done:
  free(src);
  free(cubin);
  p->st.codegen_seconds = now_s() - t0;
  if (rc) {
    cuda_plan_free(p);
    return NULL;
  }
  return p;
}

static void cuda_stats(const df_plan *p, df_plan_stats *st) {
  *st = p->st;
  st->nodes = p->s->nsteps;
  st->peak_bytes = (double)p->s->arena_bytes;
}

static void cuda_set_check(df_plan *p, int on) { p->check_finite = on; }

/* ------------------------------------------------------------ steps */

static CUdeviceptr dptr(const df_plan *p, int slot) { return p->mem + p->off[slot]; }

/* A one-dimensional launch of `blocks` blocks of `threads` threads. */
static int launch(CUfunction f, int64_t blocks, int threads, void **args, df_err *err) {
  int rc = 0;
  if (blocks <= 0) return 0;
  if (blocks > 0x7fffffff) return df_err_set(err, DF_EUNSUPPORTED, "cuda: %lld blocks in one launch", (long long)blocks);
  CU_CHECK(df_cu.cuLaunchKernel(f, (unsigned)blocks, 1, 1, (unsigned)threads, 1, 1, 0, gpu.stream, args, NULL));
done:
  return rc;
}

/* n threads, 128 to a block */
static int launch_n(CUfunction f, int64_t n, void **args, df_err *err) {
  return n > 0 ? launch(f, (n + 127) / 128, n < 128 ? (int)n : 128, args, err) : 0;
}

/* C = op(A) op(B) over broadcast batches (row-major), through cuBLAS:
** in its column-major terms C^T = op(B)^T op(A)^T.  Batch dims whose
** strides collapse into one go to one strided-batched call; the others
** are looped over. */
static int run_matmul(const df_plan *p, const df_step *st, df_err *err) {
  const df_graph *g = p->s->g;
  const df_node *n = df_graph_node(g, st->node);
  const df_node *a = df_graph_node(g, n->inputs[0]), *b = df_graph_node(g, n->inputs[1]);
  int ta = n->attrs.ia[0] != 0, tb = n->attrs.ia[1] != 0;
  int nb = n->ndim - 2, rc = 0;
  int64_t M = n->shape[nb], N = n->shape[nb + 1], K = a->shape[a->ndim - 1 - ta];
  int64_t amat = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
  int64_t bmat = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
  int64_t batches = 1;
  for (int i = 0; i < nb; i++) batches *= n->shape[i];
  CUdeviceptr A = dptr(p, st->slots[0]), B = dptr(p, st->slots[1]), C = dptr(p, st->slots[2]);
  int f64 = n->dtype == DF_F64;
  size_t es = f64 ? 8 : 4;
  if (n->dtype != DF_F32 && n->dtype != DF_F64)
    return df_err_set(err, DF_EUNSUPPORTED, "%s:%d: matmul: cuda has no product of dtype %s", n->file, n->line,
                      df_dtype_lname(n->dtype));
  if (M * N * batches == 0) return 0;
  if (K == 0) { /* an empty sum */
    CU_CHECK(df_cu.cuMemsetD8Async(C, 0, (size_t)(M * N * batches) * es, gpu.stream));
    return 0;
  }
  cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int lda = ta ? (int)M : (int)K, ldb = tb ? (int)K : (int)N;
  const double one64 = 1.0, zero64 = 0.0;
  const float one32 = 1.0f, zero32 = 0.0f;
  if (batches > 1 && b->ndim == 2 && !ta) {
    /* a weight shared by every batch: one product with M * batches rows */
    M *= batches;
    batches = 1;
    nb = 0;
  }
  /* broadcast strides of the batch dims, in matrices */
  int64_t sa[DF_MAX_DIMS] = {0}, sb[DF_MAX_DIMS] = {0};
  for (int pass = 0; pass < 2; pass++) {
    const df_node *x = pass ? b : a;
    int xb = x->ndim - 2;
    int64_t stride = 1, s[DF_MAX_DIMS];
    for (int i = xb - 1; i >= 0; i--) {
      s[i] = stride;
      stride *= x->shape[i];
    }
    for (int i = 0; i < nb; i++) {
      int j = xb - nb + i;
      (pass ? sb : sa)[i] = (j >= 0 && x->shape[j] == n->shape[i]) ? s[j] : 0;
    }
  }
  /* the longest suffix of batch dims that one strided call covers */
  int j = nb > 0 ? nb - 1 : 0;
  while (j > 0 && sa[j - 1] == sa[j] * n->shape[j] && sb[j - 1] == sb[j] * n->shape[j]) j--;
  int64_t inner = 1, outer = 1;
  for (int i = j; i < nb; i++) inner *= n->shape[i];
  for (int i = 0; i < j; i++) outer *= n->shape[i];
  long long strA = nb > 0 ? (long long)(sa[nb - 1] * amat) : 0, strB = nb > 0 ? (long long)(sb[nb - 1] * bmat) : 0;
  for (int64_t o = 0; o < outer; o++) {
    int64_t oa = 0, ob = 0, rest = o;
    for (int d = j - 1; d >= 0; d--) {
      int64_t i = rest % n->shape[d];
      rest /= n->shape[d];
      oa += i * sa[d];
      ob += i * sb[d];
    }
    CUdeviceptr pa = A + (size_t)(oa * amat) * es, pb = B + (size_t)(ob * bmat) * es;
    CUdeviceptr pc = C + (size_t)(o * inner * M * N) * es;
    if (f64)
      CUBLAS_CHECK(df_cublas.cublasDgemmStridedBatched(gpu.blas, opB, opA, (int)N, (int)M, (int)K, &one64,
                                                       (const double *)pb, ldb, strB, (const double *)pa, lda, strA,
                                                       &zero64, (double *)pc, (int)N, (long long)(M * N), (int)inner));
    else
      CUBLAS_CHECK(df_cublas.cublasSgemmStridedBatched(gpu.blas, opB, opA, (int)N, (int)M, (int)K, &one32,
                                                       (const float *)pb, ldb, strB, (const float *)pa, lda, strA,
                                                       &zero32, (float *)pc, (int)N, (long long)(M * N), (int)inner));
  }
done:
  return rc;
}

/* One step on the stream. */
static int run_step(df_plan *p, int i, df_err *err) {
  df_schedule *s = p->s;
  df_step *st = &s->steps[i];
  CUdeviceptr ptrs[64 + 3];
  void *args[64 + 3];
  long long start = 0, end = 0;
  if (st->kind == DF_STEP_MATMUL) return run_matmul(p, st, err);
  if (st->nslots > 64)
    return df_err_set(err, DF_EUNSUPPORTED, "cuda: step %d has %d buffers (at most 64)", i, st->nslots);
  for (int b = 0; b < st->nslots; b++) {
    ptrs[b] = dptr(p, st->slots[b]);
    args[b] = &ptrs[b];
  }
  if (st->kind == DF_STEP_KERNEL) {
    int64_t blocks, n;
    int threads;
    df_cuda_kernel_launch(st->kernel, &blocks, &threads, &n);
    end = n;
    args[st->nslots] = &start;
    args[st->nslots + 1] = &end;
    return end > 0 ? launch(p->fns[i], blocks, threads, args, err) : 0;
  }
  ptrs[st->nslots] = p->mem + p->status_off;
  args[st->nslots] = &ptrs[st->nslots];
  ptrs[st->nslots + 1] = p->mem + p->scratch_off;
  args[st->nslots + 1] = &ptrs[st->nslots + 1];
  int rc = launch_n(p->fns[i], df_cuda_lib_threads(s, i, 0), args, err);
  if (rc == 0 && df_cuda_lib_parts(s, i) > 1) rc = launch_n(p->fns2[i], df_cuda_lib_threads(s, i, 1), args, err);
  return rc;
}

/* check_finite: the slot a step wrote, copied to the host and checked
** (a debugging mode: it synchronises after every step). */
static int check_device_slot(df_plan *p, int slot, df_err *err) {
  const df_slot *sl = &p->s->slots[slot];
  if (!df_dtype_is_float(sl->dtype) || sl->numel == 0) return 0;
  int rc = 0;
  void *h = malloc(slot_bytes(sl));
  if (!h) return df_err_set(err, DF_ENOMEM, "cuda: out of memory");
  CU_CHECK(df_cu.cuStreamSynchronize(gpu.stream));
  CU_CHECK(df_cu.cuMemcpyDtoH(h, dptr(p, slot), slot_bytes(sl)));
  rc = df_check_finite_slot(p->s, slot, h, err);
done:
  free(h);
  return rc;
}

/* The slots a step writes: a kernel's KB_OUT buffers, a library step's
** last slot. */
static int check_step_outputs(df_plan *p, const df_step *st, df_err *err) {
  if (st->kind != DF_STEP_KERNEL) return check_device_slot(p, st->slots[st->nslots - 1], err);
  int rc = 0;
  for (int b = 0; b < st->kernel->nbufs && rc == 0; b++)
    if (st->kernel->bufs[b].role & KB_OUT) rc = check_device_slot(p, st->slots[b], err);
  return rc;
}

/* ------------------------------------------------------------ run */

/* The device allocation, the pinned staging buffer and the constants, at
** the first run. */
static int plan_memory(df_plan *p, df_err *err) {
  int rc = 0;
  df_schedule *s = p->s;
  if (!p->mem) CU_CHECK(df_cu.cuMemAlloc(&p->mem, p->total));
  if (!p->pinned) CU_CHECK(df_cu.cuMemAllocHost((void **)&p->pinned, p->feed_bytes + p->out_bytes + 64));
  if (!p->consts_ready) {
    for (int i = 0; i < s->nslots; i++)
      if (s->slots[i].kind == DF_SLOT_CONST && s->slots[i].numel > 0)
        CU_CHECK(df_cu.cuMemcpyHtoD(dptr(p, i), s->slots[i].data, slot_bytes(&s->slots[i])));
    p->consts_ready = 1;
  }
done:
  return rc;
}

/* ------------------------------------------------------------ resident state */

/* The kept tensor whose memory t is (trying `hint` first), or -1. */
static int find_kept(const df_plan *p, int hint, const df_tensor *t) {
  if (hint >= 0 && p->kept[hint].t->data == t->data && p->kept[hint].t->nbytes == t->nbytes) return hint;
  for (int k = 0; k < p->nkept; k++)
    if (p->kept[k].t->data == t->data && p->kept[k].t->nbytes == t->nbytes) return k;
  return -1;
}

/* Output i stays on the device: computed in place into the slot that
** holds kept tensor k, which the caller gave as the output's memory. */
static int stays_on_device(const df_plan *p, int i, int k) {
  return k >= 0 && p->s->out_alias[i] && p->kept[k].slot == p->s->out_slots[i] && p->kept[k].dev_ok;
}

/* Kept tensor k's device copy down into its host memory. */
static int sync_one(df_plan *p, int k, df_err *err) {
  int rc = 0;
  struct kept *e = &p->kept[k];
  if (e->host_ok || !e->dev_ok || e->slot < 0) return 0;
  CU_CHECK(df_cu.cuStreamSynchronize(gpu.stream));
  CU_CHECK(df_cu.cuMemcpyDtoH(e->t->data, dptr(p, e->slot), e->t->nbytes));
  e->host_ok = 1;
done:
  return rc;
}

/* Whether some kept tensor's only current copy is on the device. */
static int device_only_kept(const df_plan *p) {
  for (int k = 0; k < p->nkept; k++)
    if (!p->kept[k].host_ok) return 1;
  return 0;
}

/* The first step that writes an output in place into its feed, or -1
** (at compile time).  The schedule runs every step that can reject its
** input (mask_index) before it. */
static int first_in_place_step(const df_schedule *s) {
  unsigned char *aliased = calloc((size_t)s->nslots + 1, 1);
  int first = -1;
  if (!aliased) return 0; /* out of memory: fence at the first step, still correct */
  for (int o = 0; o < s->n_out; o++)
    if (s->out_alias[o]) aliased[s->out_slots[o]] = 1;
  for (int i = 0; i < s->nsteps && first < 0; i++)
    for (int j = 0; j < s->steps[i].nout && first < 0; j++)
      if (aliased[df_step_out_slot(&s->steps[i], j)]) first = i;
  free(aliased);
  return first;
}

/* The steps so far finished, and none rejected its input: before the
** in-place updates of tensors whose only copy is on the device, so that a
** run stopped by a bad input leaves them as they were. */
static int status_so_far(df_plan *p, df_err *err) {
  int rc = 0;
  long long *status = (long long *)(p->pinned + p->feed_bytes + p->out_bytes);
  CU_CHECK(df_cu.cuMemcpyDtoHAsync(status, p->mem + p->status_off, 64, gpu.stream));
  CU_CHECK(df_cu.cuStreamSynchronize(gpu.stream));
  if (status[0]) rc = df_cuda_status_message(p->s, status, err);
done:
  return rc;
}

static int cuda_keep(df_plan *p, df_tensor *const *tensors, int n, df_err *err) {
  for (int i = 0; i < n; i++) {
    if (!tensors[i] || find_kept(p, -1, tensors[i]) >= 0) continue; /* kept already */
    if (p->nkept == p->cap_kept) {
      int cap = p->cap_kept ? 2 * p->cap_kept : 64;
      struct kept *nk = realloc(p->kept, (size_t)cap * sizeof *nk);
      if (!nk) return df_err_set(err, DF_ENOMEM, "cuda: out of memory");
      p->kept = nk;
      p->cap_kept = cap;
    }
    p->kept[p->nkept++] = (struct kept){df_tensor_ref(tensors[i]), -1, 0, 1};
  }
  return 0;
}

static int cuda_sync(df_plan *p, int host_writes, df_err *err) {
  int rc = p->nkept ? gpu_ready(err) : 0;
  for (int k = 0; k < p->nkept && rc == 0; k++) rc = sync_one(p, k, err);
  if (rc == 0 && host_writes)
    for (int k = 0; k < p->nkept; k++) p->kept[k].dev_ok = 0;
  return rc;
}

static int cuda_run(df_plan *p, const df_binding *feeds, int n_feeds, df_tensor **outputs, df_err *err) {
  df_schedule *s = p->s;
  const df_graph *g = s->g;
  int rc = gpu_ready(err);
  if (rc) return rc;
  df_node_id *out_ids = malloc((size_t)(s->n_out + 1) * sizeof *out_ids);
  if (!out_ids) return df_err_set(err, DF_ENOMEM, "cuda: out of memory");
  for (int i = 0; i < s->n_out; i++) out_ids[i] = s->slots[s->out_slots[i]].node;
  rc = df_check_outputs(g, out_ids, s->n_out, outputs, err);
  free(out_ids);
  if (rc) return rc;
  df_tensor **given = calloc((size_t)s->n_out + 1, sizeof *given);
  double *prof = NULL;
  unsigned char *up = NULL; /* per slot: a feed copied up in this run */
  int *out_kept = NULL;     /* per output: the kept tensor it is written into, or -1 */
  if (!given) return df_err_set(err, DF_ENOMEM, "cuda: out of memory");
  for (int i = 0; i < s->n_out; i++) given[i] = outputs[i];
  if ((rc = plan_memory(p, err))) goto done;
  if (p->check_finite && p->nkept && (rc = cuda_sync(p, 0, err))) goto done; /* the checks read the host's copies */
  if (!(up = calloc((size_t)s->nslots + 1, 1)) || !(out_kept = malloc(((size_t)s->n_out + 1) * sizeof *out_kept))) {
    rc = df_err_set(err, DF_ENOMEM, "cuda: out of memory");
    goto done;
  }
  /* kept tensors whose only current copy is on the device and which this
  ** run would overwrite there or read from another slot: down first */
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    out_kept[i] = given[i] && p->nkept ? find_kept(p, s->out_alias[i] ? p->slot_kept[s->out_slots[i]] : -1, given[i]) : -1;
    int k = s->out_alias[i] ? p->slot_kept[s->out_slots[i]] : -1;
    if (k >= 0 && p->kept[k].slot == s->out_slots[i] && !p->kept[k].host_ok && out_kept[i] != k)
      rc = sync_one(p, k, err);
  }
  /* feeds: the ones not already on the device into the pinned buffer
  ** (checked), then up in a copy per run of adjacent slots */
  for (int i = 0; i < s->nslots && rc == 0; i++) {
    df_slot *sl = &s->slots[i];
    if (sl->kind != DF_SLOT_FEED) continue;
    const df_tensor *t = df_find_feed(df_graph_node(g, sl->node), feeds, n_feeds, err);
    if (!t) {
      rc = err && err->code ? err->code : DF_EINVAL;
      break;
    }
    int old = p->slot_kept[i], k = p->nkept ? find_kept(p, old, t) : -1;
    if (p->check_finite && (rc = df_check_finite_slot(s, i, t->data, err))) break; /* the host copies are current */
    if (k >= 0 && p->kept[k].slot == i && p->kept[k].dev_ok) {
      p->slot_kept[i] = k;
      continue; /* resident */
    }
    if (old >= 0 && old != k && p->kept[old].slot == i) {
      /* the slot held another kept tensor: its newer values down first */
      if ((rc = sync_one(p, old, err))) break;
      p->kept[old].slot = -1;
      p->kept[old].dev_ok = 0;
    }
    p->slot_kept[i] = k;
    if (k >= 0 && !p->kept[k].host_ok && (rc = sync_one(p, k, err))) break;
    memcpy(p->pinned + (p->off[i] - p->feed_off), t->data, slot_bytes(sl));
    up[i] = 1;
  }
  if (rc) goto done;
  for (int i = 0; i < s->nslots; i++) {
    if (!up[i]) continue;
    int j = i;
    while (j + 1 < s->nslots && (up[j + 1] || s->slots[j + 1].kind != DF_SLOT_FEED)) j++;
    while (!up[j]) j--;
    size_t a = p->off[i] - p->feed_off, b = p->off[j] - p->feed_off + slot_bytes(&s->slots[j]);
    if (b > a) CU_CHECK(df_cu.cuMemcpyHtoDAsync(p->mem + p->feed_off + a, p->pinned + a, b - a, gpu.stream));
    i = j;
  }
  for (int i = 0; i < s->nslots; i++) {
    int k = up[i] ? p->slot_kept[i] : -1;
    if (k >= 0 && (p->kept[k].slot < 0 || p->kept[k].slot == i || !p->kept[k].dev_ok)) {
      p->kept[k].slot = i;
      p->kept[k].dev_ok = 1;
    }
  }
  CU_CHECK(df_cu.cuMemsetD8Async(p->mem + p->status_off, 0, 64, gpu.stream));
  int prof_on = df_profiling();
  if (prof_on && !p->ev) {
    p->ev = calloc((size_t)s->nsteps + 1, sizeof *p->ev);
    if (!p->ev) {
      rc = df_err_set(err, DF_ENOMEM, "cuda: out of memory");
      goto done;
    }
    for (int i = 0; i <= s->nsteps; i++) CU_CHECK(df_cu.cuEventCreate(&p->ev[i], CU_EVENT_DEFAULT));
  }
  int fence = device_only_kept(p) ? p->first_in_place : -1;
  for (int i = 0; i < s->nsteps; i++) {
    if (i == fence && (rc = status_so_far(p, err))) goto done;
    if (prof_on) CU_CHECK(df_cu.cuEventRecord(p->ev[i], gpu.stream));
    if ((rc = run_step(p, i, err)) == 0 && gpu.debug_sync) {
      CUresult r = df_cu.cuStreamSynchronize(gpu.stream);
      if (r != CUDA_SUCCESS) rc = cu_error(err, r, "cuStreamSynchronize", __LINE__);
    }
    if (rc == 0 && p->check_finite) rc = check_step_outputs(p, &s->steps[i], err);
    if (rc) {
      /* say which step: its kernel and the Lua line that built it */
      const df_node *nd = df_graph_node(g, s->steps[i].node);
      if (err && strncmp(err->msg, "first non-finite", 16) != 0 && strstr(err->msg, "cuda: ") == err->msg) {
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err->msg);
        df_err_set(err, err->code, "%s:%d: %s (step %d): %s", nd->file, nd->line, df_step_name(s, i), i, m);
      }
      goto done;
    }
  }
  if (prof_on) CU_CHECK(df_cu.cuEventRecord(p->ev[s->nsteps], gpu.stream));
  /* outputs and the status block down, one synchronisation */
  unsigned char *outbuf = p->pinned + p->feed_bytes;
  long long *status = (long long *)(outbuf + p->out_bytes);
  for (int i = 0; i < s->n_out; i++) {
    const df_slot *sl = &s->slots[s->out_slots[i]];
    if (sl->numel > 0 && !stays_on_device(p, i, out_kept[i]))
      CU_CHECK(df_cu.cuMemcpyDtoHAsync(outbuf + p->out_off[i], dptr(p, s->out_slots[i]), slot_bytes(sl), gpu.stream));
  }
  CU_CHECK(df_cu.cuMemcpyDtoHAsync(status, p->mem + p->status_off, 64, gpu.stream));
  CUresult sr = df_cu.cuStreamSynchronize(gpu.stream);
  if (sr != CUDA_SUCCESS) {
    /* a kernel failed after its launch returned: which one shows with
    ** DFERC_CUDA_SYNC=1 */
    rc = cu_error(err, sr, "cuStreamSynchronize", __LINE__);
    if (!gpu.debug_sync && err) {
      char m[sizeof err->msg];
      snprintf(m, sizeof m, "%s", err->msg);
      df_err_set(err, rc, "%.900s; a step of the run failed (DFERC_CUDA_SYNC=1 names it)", m);
    }
    goto done;
  }
  if (status[0]) {
    rc = df_cuda_status_message(s, status, err);
    goto done;
  }
  if (prof_on) {
    prof = calloc((size_t)s->nsteps + 1, sizeof *prof);
    for (int i = 0; prof && i < s->nsteps; i++) {
      float ms = 0;
      CU_CHECK(df_cu.cuEventElapsedTime(&ms, p->ev[i], p->ev[i + 1]));
      prof[i] = ms * 1e-3;
    }
    static const char *const kinds[3] = {"kernels", "matmul (cuBLAS)", "library kernels"};
    if (prof) df_profile_report(s, prof, " on the GPU", kinds);
  }
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    const df_slot *sl = &s->slots[s->out_slots[i]];
    const df_node *nd = df_graph_node(g, sl->node);
    if (!given[i]) outputs[i] = df_tensor_new(nd->dtype, nd->ndim, nd->shape, err);
    if (!outputs[i]) rc = err && err->code ? err->code : DF_ENOMEM;
    else if (!stays_on_device(p, i, out_kept[i])) memcpy(outputs[i]->data, outbuf + p->out_off[i], outputs[i]->nbytes);
  }
  /* which copies of the kept tensors are current now */
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    int k = out_kept[i], f = s->out_slots[i];
    if (stays_on_device(p, i, k)) {
      p->kept[k].host_ok = 0;
      continue;
    }
    if (k >= 0) { /* written on the host: the device's copy agrees only if it is this slot */
      p->kept[k].host_ok = 1;
      p->kept[k].dev_ok = p->kept[k].slot == f;
    }
  }
  for (int i = 0; i < s->n_out && rc == 0; i++) {
    int k = s->out_alias[i] ? p->slot_kept[s->out_slots[i]] : -1;
    if (k >= 0 && k != out_kept[i] && p->kept[k].slot == s->out_slots[i]) p->kept[k].dev_ok = 0; /* overwritten there */
  }
done:
  if (rc && up) {
    /* a failed run may have updated in-place feeds part-way: the host's
    ** copy, where current, is uploaded again next time */
    for (int i = 0; i < s->n_out; i++) {
      int k = s->out_alias[i] ? p->slot_kept[s->out_slots[i]] : -1;
      if (k >= 0 && p->kept[k].host_ok) p->kept[k].dev_ok = 0;
    }
  }
  free(up);
  free(out_kept);
  if (rc) {
    df_cu.cuStreamSynchronize(gpu.stream); /* nothing left in flight on a failed run */
    for (int i = 0; i < s->n_out; i++) {
      if (!given[i] && outputs[i] != given[i]) df_tensor_unref(outputs[i]);
      outputs[i] = given[i];
    }
  }
  free(prof);
  free(given);
  return rc;
}

/* ------------------------------------------------------------ buffers */

static void *cuda_alloc(size_t nbytes, df_err *err) {
  CUdeviceptr d = 0;
  int rc = gpu_ready(err);
  if (rc) return NULL;
  CU_CHECK(df_cu.cuMemAlloc(&d, nbytes ? nbytes : 1));
done:
  return rc ? NULL : (void *)(uintptr_t)d;
}

static void cuda_free(void *buf) {
  if (buf && gpu.ctx && df_cu.cuCtxSetCurrent(gpu.ctx) == CUDA_SUCCESS) df_cu.cuMemFree((CUdeviceptr)(uintptr_t)buf);
}

static int cuda_to_device(void *dst, const void *src, size_t nbytes, df_err *err) {
  int rc = gpu_ready(err);
  if (rc) return rc;
  CU_CHECK(df_cu.cuMemcpyHtoD((CUdeviceptr)(uintptr_t)dst, src, nbytes));
done:
  return rc;
}

static int cuda_to_host(void *dst, const void *src, size_t nbytes, df_err *err) {
  int rc = gpu_ready(err);
  if (rc) return rc;
  CU_CHECK(df_cu.cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, nbytes));
done:
  return rc;
}

const df_device df_device_cuda = {
    .name = "cuda",
    .description = "NVIDIA GPU: fused kernels as CUDA C compiled by NVRTC, cuBLAS float32 products",
    .available = cuda_available,
    .supports_op = cuda_supports,
    .compile = cuda_compile,
    .run = cuda_run,
    .plan_stats = cuda_stats,
    .set_check_finite = cuda_set_check,
    .keep = cuda_keep,
    .sync = cuda_sync,
    .plan_free = cuda_plan_free,
    .buffer_alloc = cuda_alloc,
    .buffer_free = cuda_free,
    .copy_to_device = cuda_to_device,
    .copy_to_host = cuda_to_host,
};

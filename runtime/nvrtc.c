/*
** nvrtc.c -- see nvrtc.h.  Every NVRTC call is checked; the message names
** the call, NVRTC's error string and this file's line.
*/
#include "config.h"

#include "runtime/nvrtc.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;

static struct {
  pthread_once_t once;
  void *lib;
  char why[512];
  char version[32];
  nvrtcResult (*Version)(int *, int *);
  nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                               const char *const *);
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *);
  const char *(*GetErrorString)(nvrtcResult);
} N = {PTHREAD_ONCE_INIT};

static void load(void) {
  const char *home = getenv("CUDA_HOME");
  char p1[600] = "", p2[600] = "";
  if (home) snprintf(p1, sizeof p1, "%s/lib64/libnvrtc.so", home);
#ifdef DFERC_CUDA_HOME
  snprintf(p2, sizeof p2, "%s/lib64/libnvrtc.so", DFERC_CUDA_HOME);
#endif
  const char *cands[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", p1, p2,
                         "/usr/local/cuda/lib64/libnvrtc.so"};
  for (size_t i = 0; i < sizeof cands / sizeof cands[0] && !N.lib; i++)
    if (cands[i][0]) N.lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
  if (!N.lib) {
    snprintf(N.why, sizeof N.why, "cuda: libnvrtc.so not found (install the CUDA toolkit or set CUDA_HOME)");
    return;
  }
#define SYM(f)                                                                  \
  if (!(*(void **)&N.f = dlsym(N.lib, "nvrtc" #f))) {                           \
    snprintf(N.why, sizeof N.why, "cuda: libnvrtc.so lacks nvrtc%s", #f);       \
    dlclose(N.lib);                                                             \
    N.lib = NULL;                                                               \
    return;                                                                     \
  }
  SYM(Version) SYM(CreateProgram) SYM(CompileProgram) SYM(GetProgramLogSize) SYM(GetProgramLog)
  SYM(GetCUBINSize) SYM(GetCUBIN) SYM(DestroyProgram) SYM(GetErrorString)
#undef SYM
  int maj = 0, min = 0;
  N.Version(&maj, &min);
  snprintf(N.version, sizeof N.version, "nvrtc %d.%d", maj, min);
}

int df_nvrtc_available(df_err *err) {
  pthread_once(&N.once, load);
  if (!N.lib) return df_err_set(err, DF_EUNSUPPORTED, "%s", N.why);
  return 0;
}

const char *df_nvrtc_version(void) {
  pthread_once(&N.once, load);
  return N.version;
}

#define NVRTC_CHECK(call)                                                                      \
  do {                                                                                         \
    nvrtcResult r_ = (call);                                                                   \
    if (r_ != 0) {                                                                             \
      rc = df_err_set(err, DF_EUNSUPPORTED, "%s: %s: %s (%s:%d)", name, #call,                 \
                      N.GetErrorString(r_), __FILE__, __LINE__);                               \
      goto done;                                                                               \
    }                                                                                          \
  } while (0)

int df_nvrtc_compile(const char *src, const char *name, int arch, void **cubin, size_t *size, df_err *err) {
  if (df_nvrtc_available(err)) return err->code;
  nvrtcProgram prog = NULL;
  int rc = 0;
  char archopt[64];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=sm_%d", arch);
  const char *opts[] = {archopt, "--std=c++17", "-default-device", "--fmad=false"};
  *cubin = NULL;
  *size = 0;
  NVRTC_CHECK(N.CreateProgram(&prog, src, name, 0, NULL, NULL));
  nvrtcResult cr = N.CompileProgram(prog, 4, opts);
  if (cr != 0) {
    size_t ls = 0;
    N.GetProgramLogSize(prog, &ls);
    char *log = malloc(ls + 1);
    if (log) {
      N.GetProgramLog(prog, log);
      log[ls] = '\0';
    }
    rc = df_err_set(err, DF_EINVAL, "%s: NVRTC could not compile it for sm_%d: %.700s", name, arch,
                    log ? log : N.GetErrorString(cr));
    free(log);
    goto done;
  }
  NVRTC_CHECK(N.GetCUBINSize(prog, size));
  *cubin = malloc(*size ? *size : 1);
  if (!*cubin) {
    rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  NVRTC_CHECK(N.GetCUBIN(prog, *cubin));
done:
  if (prog) N.DestroyProgram(&prog);
  if (rc && *cubin) {
    free(*cubin);
    *cubin = NULL;
  }
  return rc;
}

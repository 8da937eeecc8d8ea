/*
** device.h -- the device interface: a table of functions that every
** backend (ref, and later cpu and cuda) fills in, so that callers compile
** and run graphs without knowing which backend does it.
**
** A plan is a graph compiled for a device, specialised to the graph's
** static shapes.  It borrows the graph: the graph must outlive the plan.
** Running a plan binds every input and param node that the outputs need to
** a host tensor by name (shape and dtype checked), and fills one host
** tensor per output: outputs[i] NULL on entry gets a new tensor (the caller
** owns it: df_tensor_unref); a tensor given in outputs[i] is written in
** place (same shape and dtype, checked before the run) after every step of
** the run has finished, so an output may overwrite one of the run's own
** feeds (a training step updating its parameters).
*/
#ifndef DF_DEVICE_H
#define DF_DEVICE_H

#include "compiler/graph.h"
#include "runtime/tensor.h"

typedef struct df_plan df_plan;

typedef struct df_binding {
  const char *name; /* an input or param node's name */
  df_tensor *tensor;
} df_binding;

typedef struct df_plan_stats {
  int nodes;              /* nodes (ref) or steps (kernel devices) the plan executes */
  double peak_bytes;      /* peak live intermediate bytes during a run */
  int kernels;            /* distinct generated kernels */
  int cache_hits, cache_misses; /* their object code found in / added to the kernel cache */
  double codegen_seconds; /* time spent generating or loading code */
} df_plan_stats;

typedef struct df_device {
  const char *name;
  const char *description;
  /* 0 if the device can be used on this machine, else an error saying why
  ** (one line, e.g. "cuda: libcuda.so.1 not found"). */
  int (*available)(df_err *err);
  int (*supports_op)(df_op op);
  df_plan *(*compile)(const df_graph *g, const df_node_id *outputs, int n_outputs,
                      df_err *err);
  int (*run)(df_plan *p, const df_binding *feeds, int n_feeds, df_tensor **outputs,
             df_err *err);
  void (*plan_stats)(const df_plan *p, df_plan_stats *st);
  /* When on, run stops at the first tensor (input, parameter or result)
  ** holding a NaN or infinity, with an error naming it and its line.
  ** NULL when the device cannot check. */
  void (*set_check_finite)(df_plan *p, int on);
  /* Resident state (NULL where a device reads the host's memory itself):
  ** keep registers host tensors whose values stay in device memory
  ** between runs -- a feed bound to one is copied up only when the
  ** device's copy is not current, and an output computed in place into
  ** its feed and written into the same tensor is not copied back (the
  ** host's copy is then stale).  sync copies every stale kept tensor
  ** down; with `host_writes`, the device's copies are then treated as
  ** stale (the caller may write the tensors before the next run).  The
  ** plan holds a reference to each kept tensor and syncs them when freed. */
  int (*keep)(df_plan *p, df_tensor *const *tensors, int n, df_err *err);
  int (*sync)(df_plan *p, int host_writes, df_err *err);
  void (*plan_free)(df_plan *p);
  /* Device memory: a buffer of nbytes (NULL with err on failure), freed by
  ** buffer_free; copies between host memory and a device buffer. */
  void *(*buffer_alloc)(size_t nbytes, df_err *err);
  void (*buffer_free)(void *buf);
  int (*copy_to_device)(void *dst, const void *src, size_t nbytes, df_err *err);
  int (*copy_to_host)(void *dst, const void *src, size_t nbytes, df_err *err);
} df_device;

/* Where compiling devices write their kernels for a human to read (Kernel
** IR, LLVM IR, assembly; later CUDA C): NULL for nowhere (the default),
** or $DFERC_DUMP.  The folder must exist. */
void df_set_dump_dir(const char *dir);
const char *df_dump_dir(void);

/* The kernel cache the compiling devices share (cache/): opened on first
** use at path (NULL: $DFERC_CACHE, else $XDG_CACHE_HOME/dferc/kernels.db),
** or disabled (enabled 0; also $DFERC_NO_CACHE=1).  Call before the first
** compile to take effect. */
struct df_cache;
void df_set_kernel_cache(int enabled, const char *path);
struct df_cache *df_kernel_cache(void);

/* The device of that name ("ref", "cpu", "cuda"), or NULL with a message
** listing the devices this build has, or why the named one is unusable. */
const df_device *df_device_get(const char *name, df_err *err);

/* For devices: the feed bound to an input or param node, checked for shape
** and dtype; NULL with an error naming the node when absent or wrong. */
const df_tensor *df_find_feed(const df_node *nd, const df_binding *feeds, int n_feeds, df_err *err);

/* For devices: check the tensors given in outputs[] (NULL entries are
** skipped) against the output nodes ids[]. */
int df_check_outputs(const df_graph *g, const df_node_id *ids, int n, df_tensor **outputs, df_err *err);

/* The device of that name in this build, usable here or not (for what it
** supports); NULL if the build has none of that name. */
const df_device *df_device_find(const char *name);

/* Names of every device this build knows, NULL-terminated. */
const char *const *df_device_names(void);

extern const df_device df_device_ref;
extern const df_device df_device_cpu;
extern const df_device df_device_cuda; /* builds with the CUDA headers (DFERC_HAVE_CUDA) */

/* The cpu device's float32 products: per shape, the tuner's stored choice
** between OpenBLAS and the generated GEMM, else OpenBLAS (auto, the
** default; runtime/cpu_gemm.h); OpenBLAS always (DFERC_GEMM=blas); the
** generated GEMM of compiler/gemm (generated); or that GEMM with bfloat16
** operands and float32 sums (bf16: the optional bf16 mode, on CPUs with
** AVX512-BF16; not exact to float32); for plans compiled after the call. */
enum { DF_GEMM_BLAS = 0, DF_GEMM_GENERATED = 1, DF_GEMM_BF16 = 2, DF_GEMM_AUTO = 3 };
void df_cpu_set_gemm(int mode);
int df_cpu_gemm(void);

#endif

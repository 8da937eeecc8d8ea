/*
** pth.h -- a safe reader for PyTorch checkpoints (.pth files written by
** torch.save since PyTorch 1.6: a zip archive holding a pickle, data.pkl,
** and one raw little-endian entry per storage, data/<key>).
**
** No pickle code runs.  A restricted unpickler understands the opcodes
** torch.save emits and only these globals: collections.OrderedDict,
** argparse.Namespace (read as a dict), torch.Size (a tuple),
** torch._utils._rebuild_tensor_v2 (a tensor) and the storage classes
** torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage,
** LongStorage, IntStorage, ByteStorage, BoolStorage and UntypedStorage
** (F32 F16 BF16 F64 I64 I32 U8 BOOL U8).  Any other global, such as
** os.system, is refused with an error naming it.
**
** df_pth_open() parses and checks everything before returning: the zip
** structure and CRCs, every opcode, every tensor's view against its
** storage.  Each tensor is copied into its own contiguous df_tensor, so
** the file's mapping is released before the open returns.  The result is
** a tree of values (DAG: a value may be shared, never a cycle; nesting at
** most DF_PTH_MAX_DEPTH), owned by the handle.  Every error names the
** file and what is wrong with it.
*/
#ifndef DF_PTH_H
#define DF_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/err.h"
#include "runtime/tensor.h"

#define DF_PTH_MAX_DEPTH 256 /* nesting of containers, and of pickle MARKs */

typedef struct df_pth_file df_pth_file;
typedef struct df_pth_value df_pth_value;

typedef enum {
  DF_PTH_NONE,
  DF_PTH_BOOL,
  DF_PTH_INT,    /* int64; larger Python ints are refused */
  DF_PTH_FLOAT,
  DF_PTH_STR,    /* UTF-8 */
  DF_PTH_BYTES,
  DF_PTH_TUPLE,  /* also torch.Size */
  DF_PTH_LIST,
  DF_PTH_DICT,   /* dict, OrderedDict, argparse.Namespace; keys STR or INT,
                    unique, in file order */
  DF_PTH_TENSOR
} df_pth_kind;

/* Parse the checkpoint at `path` (mapped read-only while parsing). */
df_pth_file *df_pth_open(const char *path, df_err *err);
/* The same from memory; `name` stands for the path in error messages.
** `data` is only read during the call. */
df_pth_file *df_pth_open_mem(const void *data, size_t size, const char *name,
                             df_err *err);
void df_pth_close(df_pth_file *f);

const char *df_pth_path(const df_pth_file *f);
const df_pth_value *df_pth_root(const df_pth_file *f);

/* Values.  Every accessor accepts NULL and values of the wrong kind, and
** then returns 0 / NULL (df_pth_type(NULL) is DF_PTH_NONE). */
df_pth_kind df_pth_type(const df_pth_value *v);
const char *df_pth_kind_name(df_pth_kind k);   /* "int", "dict", ... */
/* Items of a tuple, list or dict; bytes of a str or bytes; else 0. */
size_t df_pth_len(const df_pth_value *v);
/* Item i of a tuple or list, or the value of dict entry i. */
const df_pth_value *df_pth_item(const df_pth_value *v, size_t i);
/* The key of dict entry i (a STR or an INT). */
const df_pth_value *df_pth_key(const df_pth_value *v, size_t i);
/* The value under string key `key` of a dict, or NULL. */
const df_pth_value *df_pth_get(const df_pth_value *v, const char *key);
int64_t df_pth_int(const df_pth_value *v);     /* INT, BOOL (0 / 1) */
double df_pth_float(const df_pth_value *v);    /* FLOAT, INT, BOOL */
/* STR (NUL-terminated; may hold NULs, see df_pth_len) or BYTES. */
const char *df_pth_str(const df_pth_value *v);
/* A TENSOR's data: contiguous, row-major, owned by the file (take a
** df_tensor_ref to keep it past df_pth_close). */
df_tensor *df_pth_tensor(const df_pth_value *v);

/*
** The state dict: root['model'] if the root is a dict with that key, else
** root['module'], else the root itself; it must be a dict from string
** names to tensors.  Returns the number of tensors, or a negative df_err
** code with the reason in err.  *which (may be NULL) is set to "model",
** "module" or "" (the root).  Entries i in [0, count) are in file order.
*/
int df_pth_state_dict(const df_pth_file *f, const char **which, df_err *err);
const char *df_pth_sd_name(const df_pth_file *f, int i);
df_tensor *df_pth_sd_tensor(const df_pth_file *f, int i);

#endif

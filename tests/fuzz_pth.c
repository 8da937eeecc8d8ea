/*
** fuzz_pth.c -- libFuzzer target for the .pth reader: any byte string,
** parsed from memory by df_pth_open_mem(), must give a handle or a clean
** error, never a crash, leak or undefined behaviour.  On success it walks
** the state dict and every tensor's bytes, so that a bad view would be
** read under the sanitizers.
**
** Build (tests/sh/test_pth_asan.sh does this):
**   clang -fsanitize=fuzzer,address,undefined \
**     -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -I. compiler/err.c \
**     compiler/dtype.c runtime/tensor.c runtime/pth.c tests/fuzz_pth.c -lm
** FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION makes the reader skip CRC
** comparisons, so mutated pickles reach the unpickler.
*/
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/pth.h"

/* Touch every byte of a tensor (the sanitizers check the bounds). */
static unsigned sum_tensor(const df_tensor *t) {
  unsigned s = 0;
  const unsigned char *p = t->data;
  for (size_t i = 0; i < t->nbytes; i++) s += p[i];
  return s;
}

/* Visit a value tree (nesting is at most DF_PTH_MAX_DEPTH). */
static unsigned walk(const df_pth_value *v, int depth) {
  unsigned s = (unsigned)df_pth_type(v);
  if (depth > DF_PTH_MAX_DEPTH) __builtin_trap();
  if (df_pth_tensor(v)) s += sum_tensor(df_pth_tensor(v));
  if (df_pth_str(v)) s += (unsigned)strlen(df_pth_str(v));
  for (size_t i = 0; i < df_pth_len(v); i++) {
    if (df_pth_type(v) == DF_PTH_DICT) s += walk(df_pth_key(v, i), depth + 1);
    s += walk(df_pth_item(v, i), depth + 1);
  }
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  df_err err;
  df_err_clear(&err);
  df_pth_file *f = df_pth_open_mem(data, size, "fuzz.pth", &err);
  if (!f) {
    /* every error names the input */
    if (!err.code || strncmp(err.msg, "fuzz.pth: ", 10) != 0) __builtin_trap();
    return 0;
  }
  volatile unsigned s = walk(df_pth_root(f), 1);
  const char *which;
  int n = df_pth_state_dict(f, &which, &err);
  for (int i = 0; i < n; i++) {
    s += (unsigned)strlen(df_pth_sd_name(f, i));
    s += sum_tensor(df_pth_sd_tensor(f, i));
  }
  (void)s;
  df_pth_close(f);
  return 0;
}

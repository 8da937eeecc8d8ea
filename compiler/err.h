/*
** err.h -- the error record every layer fills in.
**
** Functions that can fail take a `df_err *` (may be NULL) and return a
** status (0 = ok, negative = error) or NULL.  The first error wins: later
** calls to df_err_set() on an already-set record are ignored, so an error
** raised deep inside keeps its precise message while callers unwind.
** Only the Lua glue turns a df_err into a Lua error.
*/
#ifndef DF_ERR_H
#define DF_ERR_H

#include <stddef.h>

enum {
  DF_OK = 0,
  DF_EINVAL = -1,      /* bad argument or user input (config, shapes) */
  DF_ENOMEM = -2,      /* allocation failed */
  DF_EIO = -3,         /* file system error */
  DF_EFORMAT = -4,     /* malformed file (safetensors, JSON, ...) */
  DF_ESHAPE = -5,      /* shape or dtype mismatch */
  DF_EUNSUPPORTED = -6,/* op or feature not available on this device */
  DF_ERUNTIME = -7     /* a run-time check failed (e.g. mask layout) */
};

#define DF_ERR_MSG_MAX 1024

typedef struct df_err {
  int code;                 /* 0 while no error has been recorded */
  char msg[DF_ERR_MSG_MAX]; /* human-readable, names the user's input */
} df_err;

/* Record an error (printf-style) unless one is already recorded.
** Returns `code`, so `return df_err_set(e, DF_EINVAL, ...)` reads well. */
int df_err_set(df_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the recorded message with "prefix: " (e.g. a file name). */
void df_err_prefix(df_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void df_err_clear(df_err *e);

/* Copy at most `max` bytes of user text into `buf` (NUL-terminated),
** ending with "..." when cut, so error messages stay a sane length. */
const char *df_err_quote(char *buf, size_t bufsz, const char *s, size_t len);

#endif

/*
** err.c -- see err.h.
*/
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int df_err_set(df_err *e, int code, const char *fmt, ...) {
  if (!e || e->code != 0) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->code = code;
  return code;
}

void df_err_prefix(df_err *e, const char *fmt, ...) {
  if (!e || e->code == 0) return;
  char pre[DF_ERR_MSG_MAX], old[DF_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  snprintf(e->msg, sizeof e->msg, "%.*s: %.*s", 400, pre, DF_ERR_MSG_MAX - 410, old);
}

void df_err_clear(df_err *e) {
  if (!e) return;
  e->code = 0;
  e->msg[0] = '\0';
}

const char *df_err_quote(char *buf, size_t bufsz, const char *s, size_t len) {
  if (bufsz == 0) return buf;
  if (len + 1 <= bufsz) {
    memcpy(buf, s, len);
    buf[len] = '\0';
  } else if (bufsz > 4) {
    memcpy(buf, s, bufsz - 4);
    memcpy(buf + bufsz - 4, "...", 4);
  } else {
    buf[0] = '\0';
  }
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20) *p = '?';
  return buf;
}

/*
** dataset.c -- annotation files (see dataset.h for the accepted format).
**
** The file is read whole (split files are small: DFEW's largest is
** 0.5 MB), split into lines and checked line by line; the first bad line
** stops the read with an error naming it.  Entries own their resolved
** paths.
*/
#include "runtime/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DF_CSV_MAX_BYTES ((size_t)1 << 30) /* refuse annotation files over 1 GiB */

typedef struct {
  char *path;
  int label;
  int line;
} csv_entry;

struct df_csv {
  csv_entry *e;
  size_t n, cap;
};

static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_sep(char c) { return c == ' ' || c == '\t' || c == ','; }

/*
** Read the whole file at `path` into a NUL-terminated buffer (*out, owned
** by the caller; *len excludes the NUL).
*/
static int read_all(const char *path, const char *qpath, char **out, size_t *len, df_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return df_err_set(err, DF_EIO, "%s: cannot open: %s", qpath, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int rc = DF_OK;
  while (buf) {
    if (n + 1 >= cap) {
      if (cap >= DF_CSV_MAX_BYTES) {
        rc = df_err_set(err, DF_EFORMAT, "%s: larger than 1 GiB; not an annotation file", qpath);
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) break;
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) rc = df_err_set(err, DF_EIO, "%s: read error: %s", qpath, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (!buf) return df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return DF_OK;
}

/*
** The folder part of `path` with its trailing '/', or "" when the path
** has no '/' (then relative entries stay relative to the working folder,
** which is where the annotation file is).  Owned by the caller.
*/
static char *folder_of(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) + 1 : 0;
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, path, n);
  d[n] = '\0';
  return d;
}

/*
** Parse a label: decimal digits only, value in [0, INT_MAX]; returns 0 and
** the value, or -1.
*/
static int parse_label(const char *s, size_t len, int *out) {
  if (len == 0 || len > 10) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v > INT_MAX) return -1;
  *out = (int)v;
  return 0;
}

static int push_entry(df_csv *c, char *path, int label, int line) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    csv_entry *ne = realloc(c->e, cap * sizeof *ne);
    if (!ne) return -1;
    c->e = ne;
    c->cap = cap;
  }
  c->e[c->n++] = (csv_entry){path, label, line};
  return 0;
}

/*
** One line (without its '\n'), `s`..`s + len`: skip it, or append an entry
** whose path is resolved against `dir`.
*/
static int parse_line(df_csv *c, const char *qpath, const char *dir, int lineno,
                      const char *s, size_t len, df_err *err) {
  char q[96];
  if (memchr(s, '\0', len))
    return df_err_set(err, DF_EFORMAT, "%s:%d: contains a NUL byte", qpath, lineno);
  while (len > 0 && (is_blank(s[len - 1]) || s[len - 1] == '\r')) len--;
  while (len > 0 && is_blank(*s)) s++, len--;
  if (len == 0 || *s == '#') return DF_OK;
  size_t lab = len;
  while (lab > 0 && !is_sep(s[lab - 1])) lab--;
  size_t pend = lab;
  while (pend > 0 && is_sep(s[pend - 1])) pend--;
  if (lab == 0)
    return df_err_set(err, DF_EFORMAT, "%s:%d: '%s': missing label (expected 'PATH LABEL')",
                      qpath, lineno, df_err_quote(q, sizeof q, s, len));
  if (pend == 0)
    return df_err_set(err, DF_EFORMAT, "%s:%d: '%s': missing path (expected 'PATH LABEL')",
                      qpath, lineno, df_err_quote(q, sizeof q, s, len));
  int label;
  if (parse_label(s + lab, len - lab, &label))
    return df_err_set(err, DF_EFORMAT, "%s:%d: label '%s' is not a non-negative integer",
                      qpath, lineno, df_err_quote(q, sizeof q, s + lab, len - lab));
  size_t dlen = s[0] == '/' ? 0 : strlen(dir);
  char *p = malloc(dlen + pend + 1);
  if (!p) return df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
  memcpy(p, dir, dlen);
  memcpy(p + dlen, s, pend);
  p[dlen + pend] = '\0';
  if (push_entry(c, p, label, lineno)) {
    free(p);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
  }
  return DF_OK;
}

df_csv *df_csv_read(const char *path, df_err *err) {
  char qpath[256];
  df_err_quote(qpath, sizeof qpath, path, strlen(path));
  char *buf = NULL;
  size_t len = 0;
  if (read_all(path, qpath, &buf, &len, err)) return NULL;
  df_csv *c = calloc(1, sizeof *c);
  char *dir = folder_of(path);
  if (!c || !dir) {
    free(buf);
    free(c);
    free(dir);
    df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
    return NULL;
  }
  const char *s = buf, *end = buf + len;
  if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
  int rc = DF_OK;
  for (int lineno = 1; s < end && rc == DF_OK; lineno++) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *le = nl ? nl : end;
    if (lineno == INT_MAX) {
      rc = df_err_set(err, DF_EFORMAT, "%s: too many lines", qpath);
      break;
    }
    rc = parse_line(c, qpath, dir, lineno, s, (size_t)(le - s), err);
    s = nl ? nl + 1 : end;
  }
  if (rc == DF_OK && c->n == 0) rc = df_err_set(err, DF_EFORMAT, "%s: no entries", qpath);
  free(buf);
  free(dir);
  if (rc) {
    df_csv_free(c);
    return NULL;
  }
  return c;
}

void df_csv_free(df_csv *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) free(c->e[i].path);
  free(c->e);
  free(c);
}

size_t df_csv_count(const df_csv *c) { return c->n; }
const char *df_csv_path(const df_csv *c, size_t i) { return i < c->n ? c->e[i].path : NULL; }
int df_csv_label(const df_csv *c, size_t i) { return i < c->n ? c->e[i].label : -1; }
int df_csv_line(const df_csv *c, size_t i) { return i < c->n ? c->e[i].line : 0; }

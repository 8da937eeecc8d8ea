/*
** json.c -- a strict RFC 8259 JSON reader (see json.h).
**
** Recursive descent over (text, len); the input need not be NUL-terminated
** and may hold NUL bytes, which are simply not valid JSON outside strings
** (and must be escaped inside them).  Recursion is bounded by the 64-level
** nesting limit, so hostile input cannot overflow the C stack.  Strings
** must be valid UTF-8; \uXXXX escapes (surrogate pairs included) become
** UTF-8, and a lone surrogate becomes U+FFFD.  Object keys may not contain
** U+0000, because json.h hands them out as C strings and two keys equal up
** to a NUL would look the same to df_json_get().  Duplicate keys are found
** with a small hash set per object, so a header with a million keys stays
** linear.  Numbers are checked against the JSON grammar by hand, then
** converted with strtod on a NUL-terminated copy (the C locale is assumed,
** so '.' is the decimal point); integer literals that fit int64 also get
** an exact i64.
*/
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DF_JSON_MAX_DEPTH 64

typedef struct {
  const unsigned char *s;
  size_t len, pos;
  df_err *err;
} jparser;

/*
** Describe the byte at the parse position for "found ..." in messages.
*/
static const char *jp_found(const jparser *p, char *buf, size_t bufsz) {
  if (p->pos >= p->len) return "end of input";
  unsigned char c = p->s[p->pos];
  if (c >= 0x21 && c < 0x7f) snprintf(buf, bufsz, "'%c'", c);
  else snprintf(buf, bufsz, "byte 0x%02x", c);
  return buf;
}

/* Record "JSON: offset N: what, found X" at the current position. */
static int jp_expected(jparser *p, const char *what) {
  char fb[32];
  return df_err_set(p->err, DF_EFORMAT, "JSON: offset %zu: expected %s, found %s",
                    p->pos, what, jp_found(p, fb, sizeof fb));
}

static int jp_nomem(jparser *p) {
  return df_err_set(p->err, DF_ENOMEM, "JSON: offset %zu: out of memory", p->pos);
}

static void jp_skip_ws(jparser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* Free what a value owns (not the value itself). */
static void json_free_inner(df_json *v) {
  if (!v) return;
  free(v->str);
  if (v->kind == DF_JSON_ARR || v->kind == DF_JSON_OBJ) {
    for (size_t i = 0; i < v->len; i++) json_free_inner(&v->items[i]);
    if (v->keys)
      for (size_t i = 0; i < v->len; i++) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof *v);
}

void df_json_free(df_json *j) {
  if (!j) return;
  json_free_inner(j);
  free(j);
}

const df_json *df_json_get(const df_json *j, const char *key) {
  if (!j || !key || j->kind != DF_JSON_OBJ) return NULL;
  for (size_t i = 0; i < j->len; i++)
    if (strcmp(j->keys[i], key) == 0) return &j->items[i];
  return NULL;
}

/*
** Length of the valid UTF-8 sequence at s (n bytes available), or 0 when
** it is malformed: overlong forms, UTF-16 surrogates and code points above
** U+10FFFF are rejected as RFC 3629 requires.
*/
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) need = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    if (c == 0xe0) lo = 0xa0;        /* overlong */
    else if (c == 0xed) hi = 0x9f;   /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    if (c == 0xf0) lo = 0x90;        /* overlong */
    else if (c == 0xf4) hi = 0x8f;   /* > U+10FFFF */
  } else return 0;
  if (n < need) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return need;
}

static size_t utf8_put(unsigned char *out, uint32_t cp) {
  if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xc0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xe0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (unsigned char)(0xf0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Four hex digits at s[at..at+3] (bounds checked), or -1. */
static long jp_hex4(const jparser *p, size_t at) {
  if (at > p->len || p->len - at < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = p->s[at + (size_t)i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

/*
** Parse a string at p->pos (which holds '"') into a fresh NUL-terminated
** buffer.  A first pass finds the closing quote so one allocation of the
** raw span suffices: every escape decodes to no more bytes than it spans.
*/
static int jp_string(jparser *p, char **out, size_t *outlen) {
  size_t start = ++p->pos, end = start;
  while (end < p->len && p->s[end] != '"') {
    if (p->s[end] == '\\') end++;
    end++;
  }
  if (end >= p->len) {
    return df_err_set(p->err, DF_EFORMAT,
                      "JSON: offset %zu: unterminated string (no closing '\"')",
                      start - 1);
  }
  unsigned char *buf = malloc(end - start + 1);
  if (!buf) return jp_nomem(p);
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = p->s[p->pos];
    if (c < 0x20) {
      free(buf);
      return df_err_set(p->err, DF_EFORMAT,
                        "JSON: offset %zu: control character 0x%02x in string "
                        "(must be escaped)", p->pos, c);
    }
    if (c != '\\') {
      size_t k = utf8_seq_len(p->s + p->pos, end - p->pos);
      if (k == 0) {
        free(buf);
        return df_err_set(p->err, DF_EFORMAT,
                          "JSON: offset %zu: invalid UTF-8 byte 0x%02x in string",
                          p->pos, c);
      }
      memcpy(buf + n, p->s + p->pos, k);
      n += k;
      p->pos += k;
      continue;
    }
    unsigned char e = p->s[p->pos + 1]; /* end > pos + 1: the scan skipped it */
    switch (e) {
    case '"': buf[n++] = '"'; break;
    case '\\': buf[n++] = '\\'; break;
    case '/': buf[n++] = '/'; break;
    case 'b': buf[n++] = '\b'; break;
    case 'f': buf[n++] = '\f'; break;
    case 'n': buf[n++] = '\n'; break;
    case 'r': buf[n++] = '\r'; break;
    case 't': buf[n++] = '\t'; break;
    case 'u': {
      long cp = jp_hex4(p, p->pos + 2);
      if (cp < 0) {
        free(buf);
        return df_err_set(p->err, DF_EFORMAT,
                          "JSON: offset %zu: bad \\u escape: expected 4 hex digits",
                          p->pos);
      }
      size_t span = 6;
      if (cp >= 0xd800 && cp <= 0xdbff) {
        /* a high surrogate: pair it with a following \uDC00-\uDFFF */
        long lo = -1;
        if (p->pos + 6 < end && p->s[p->pos + 6] == '\\' && p->pos + 7 < end &&
            p->s[p->pos + 7] == 'u')
          lo = jp_hex4(p, p->pos + 8);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          span = 12;
        } else {
          cp = 0xfffd; /* lone high surrogate */
        }
      } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        cp = 0xfffd;   /* lone low surrogate */
      }
      n += utf8_put(buf + n, (uint32_t)cp);
      p->pos += span;
      continue;
    }
    default: {
      free(buf);
      char fb[32];
      if (e >= 0x21 && e < 0x7f) snprintf(fb, sizeof fb, "'\\%c'", e);
      else snprintf(fb, sizeof fb, "'\\' followed by byte 0x%02x", e);
      return df_err_set(p->err, DF_EFORMAT,
                        "JSON: offset %zu: invalid escape %s in string", p->pos, fb);
    }
    }
    p->pos += 2;
  }
  buf[n] = '\0';
  p->pos = end + 1;
  *out = (char *)buf;
  *outlen = n;
  return 0;
}

/*
** Parse a number: the grammar is checked by hand (strtod alone would take
** "0x1p3", "inf", " 1" or "1."), then the literal is converted.
*/
static int jp_number(jparser *p, df_json *v) {
  size_t start = p->pos, i = p->pos;
  int neg = 0, is_int = 1;
  if (i < p->len && p->s[i] == '-') { neg = 1; i++; }
  if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') {
    p->pos = i;
    return jp_expected(p, "a digit");
  }
  if (p->s[i] == '0') {
    i++;
    if (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') {
      return df_err_set(p->err, DF_EFORMAT,
                        "JSON: offset %zu: leading zeros are not allowed in numbers",
                        start);
    }
  } else {
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  size_t int_end = i;
  if (i < p->len && p->s[i] == '.') {
    is_int = 0;
    i++;
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') {
      p->pos = i;
      return jp_expected(p, "a digit after '.'");
    }
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }
  if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
    is_int = 0;
    i++;
    if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
    if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') {
      p->pos = i;
      return jp_expected(p, "a digit in the exponent");
    }
    while (i < p->len && p->s[i] >= '0' && p->s[i] <= '9') i++;
  }

  /* exact int64 for integer literals (magnitude up to 2^63 when negative) */
  v->kind = DF_JSON_NUM;
  if (is_int) {
    uint64_t mag = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t k = start + (size_t)neg; k < int_end; k++) {
      unsigned d = (unsigned)(p->s[k] - '0');
      if (mag > (lim - d) / 10) { is_int = 0; break; }
      mag = mag * 10 + d;
    }
    if (is_int) {
      v->is_int = 1;
      v->i64 = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
                   : (int64_t)mag;
    }
  }

  size_t n = i - start;
  char small[64], *tmp = small;
  if (n >= sizeof small) {
    tmp = malloc(n + 1);
    if (!tmp) return jp_nomem(p);
  }
  memcpy(tmp, p->s + start, n);
  tmp[n] = '\0';
  v->num = strtod(tmp, NULL);
  if (tmp != small) free(tmp);
  if (isinf(v->num)) {
    v->is_int = 0;
    return df_err_set(p->err, DF_EFORMAT,
                      "JSON: offset %zu: number out of the range of a double", start);
  }
  p->pos = i;
  return 0;
}

static int jp_literal(jparser *p, const char *word, size_t n) {
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
    char what[32];
    snprintf(what, sizeof what, "'%s'", word);
    return jp_expected(p, what);
  }
  p->pos += n;
  return 0;
}

static int jp_value(jparser *p, df_json *v, int depth);

/* Grow a parallel items (and keys) array to hold at least one more. */
static int jp_grow(jparser *p, df_json *v, size_t *cap, int with_keys) {
  if (v->len < *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 4;
  if (nc < *cap || nc > SIZE_MAX / sizeof(df_json)) return jp_nomem(p);
  df_json *items = realloc(v->items, nc * sizeof *items);
  if (!items) return jp_nomem(p);
  v->items = items;
  if (with_keys) {
    char **keys = realloc(v->keys, nc * sizeof *keys);
    if (!keys) return jp_nomem(p);
    v->keys = keys;
  }
  *cap = nc;
  return 0;
}

static int jp_array(jparser *p, df_json *v, int depth) {
  size_t cap = 0;
  v->kind = DF_JSON_ARR;
  p->pos++; /* '[' */
  jp_skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return 0; }
  for (;;) {
    jp_skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']')
      return jp_expected(p, "a value after ',' (trailing comma?)");
    if (jp_grow(p, v, &cap, 0)) return -1;
    df_json *item = &v->items[v->len];
    memset(item, 0, sizeof *item);
    int rc = jp_value(p, item, depth + 1);
    v->len++; /* counted even on failure so json_free_inner frees it */
    if (rc) return rc;
    jp_skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
    if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return 0; }
    return jp_expected(p, "',' or ']' in array");
  }
}

static uint64_t key_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/*
** Set of the keys seen so far in one object (open addressing over indices
** into v->keys, stored +1 so 0 means empty).  Returns 1 when `key` (index
** idx) is already present, 0 when inserted, -1 when out of memory.
*/
typedef struct { size_t *slot, cap, n; } keyset;

static int keyset_add(keyset *ks, char **keys, size_t idx) {
  if ((ks->n + 1) * 2 > ks->cap) {
    size_t nc = ks->cap ? ks->cap * 2 : 16;
    if (nc < ks->cap || nc > SIZE_MAX / sizeof(size_t)) return -1;
    size_t *ns = calloc(nc, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < ks->cap; i++) {
      if (!ks->slot[i]) continue;
      size_t h = (size_t)key_hash(keys[ks->slot[i] - 1]) & (nc - 1);
      while (ns[h]) h = (h + 1) & (nc - 1);
      ns[h] = ks->slot[i];
    }
    free(ks->slot);
    ks->slot = ns;
    ks->cap = nc;
  }
  size_t h = (size_t)key_hash(keys[idx]) & (ks->cap - 1);
  while (ks->slot[h]) {
    if (strcmp(keys[ks->slot[h] - 1], keys[idx]) == 0) return 1;
    h = (h + 1) & (ks->cap - 1);
  }
  ks->slot[h] = idx + 1;
  ks->n++;
  return 0;
}

static int jp_object(jparser *p, df_json *v, int depth) {
  size_t cap = 0;
  keyset ks = {NULL, 0, 0};
  int rc = 0;
  v->kind = DF_JSON_OBJ;
  p->pos++; /* '{' */
  jp_skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return 0; }
  for (;;) {
    jp_skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != '"') {
      rc = jp_expected(p, v->len ? "a string key after ',' (trailing comma?)"
                                 : "a string key or '}'");
      break;
    }
    size_t key_at = p->pos;
    char *key;
    size_t klen;
    if ((rc = jp_string(p, &key, &klen))) break;
    if (strlen(key) != klen) {
      free(key);
      rc = df_err_set(p->err, DF_EFORMAT,
                      "JSON: offset %zu: object key contains \\u0000", key_at);
      break;
    }
    if ((rc = jp_grow(p, v, &cap, 1))) { free(key); break; }
    v->keys[v->len] = key;
    memset(&v->items[v->len], 0, sizeof v->items[0]);
    v->len++;
    int dup = keyset_add(&ks, v->keys, v->len - 1);
    if (dup < 0) { rc = jp_nomem(p); break; }
    if (dup) {
      char qb[128];
      rc = df_err_set(p->err, DF_EFORMAT, "JSON: offset %zu: duplicate key '%s'",
                      key_at, df_err_quote(qb, sizeof qb, key, klen));
      break;
    }
    jp_skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':') {
      rc = jp_expected(p, "':' after object key");
      break;
    }
    p->pos++;
    if ((rc = jp_value(p, &v->items[v->len - 1], depth + 1))) break;
    jp_skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
    if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; break; }
    rc = jp_expected(p, "',' or '}' in object");
    break;
  }
  free(ks.slot);
  return rc;
}

/*
** Parse one value at the current position (after whitespace) into *v,
** which the caller has zeroed.  On failure *v may hold partial contents
** that json_free_inner() releases.
*/
static int jp_value(jparser *p, df_json *v, int depth) {
  jp_skip_ws(p);
  if (p->pos >= p->len) return jp_expected(p, "a value");
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{':
  case '[':
    if (depth >= DF_JSON_MAX_DEPTH)
      return df_err_set(p->err, DF_EFORMAT,
                        "JSON: offset %zu: nesting deeper than %d levels", p->pos,
                        DF_JSON_MAX_DEPTH);
    return c == '{' ? jp_object(p, v, depth) : jp_array(p, v, depth);
  case '"':
    v->kind = DF_JSON_STR;
    return jp_string(p, &v->str, &v->len);
  case 't':
    v->kind = DF_JSON_BOOL;
    v->boolean = 1;
    return jp_literal(p, "true", 4);
  case 'f':
    v->kind = DF_JSON_BOOL;
    return jp_literal(p, "false", 5);
  case 'n':
    v->kind = DF_JSON_NULL;
    return jp_literal(p, "null", 4);
  default:
    if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p, v);
    return jp_expected(p, "a value");
  }
}

df_json *df_json_parse(const char *text, size_t len, df_err *err) {
  if (!text && len) {
    df_err_set(err, DF_EINVAL, "JSON: no input text");
    return NULL;
  }
  jparser p = {(const unsigned char *)(text ? text : ""), len, 0, err};
  df_json *root = calloc(1, sizeof *root);
  if (!root) {
    jp_nomem(&p);
    return NULL;
  }
  if (jp_value(&p, root, 0) == 0) {
    jp_skip_ws(&p);
    if (p.pos == p.len) return root;
    jp_expected(&p, "end of input after the value");
  }
  df_json_free(root);
  return NULL;
}

/*
** json.h -- a small, strict JSON reader (RFC 8259) for safetensors headers
** and model configs.
**
** df_json_parse() returns a tree that the caller owns and frees with
** df_json_free().  Objects keep their keys in file order; duplicate keys
** are an error.  Nesting deeper than 64 levels is an error (no stack
** overflow on hostile input).  Errors give the byte offset and what was
** expected: "JSON: offset 17: expected ':' after object key".
*/
#ifndef DF_JSON_H
#define DF_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/err.h"

typedef enum {
  DF_JSON_NULL, DF_JSON_BOOL, DF_JSON_NUM, DF_JSON_STR, DF_JSON_ARR, DF_JSON_OBJ
} df_json_kind;

typedef struct df_json df_json;
struct df_json {
  df_json_kind kind;
  int boolean;       /* DF_JSON_BOOL */
  double num;        /* DF_JSON_NUM */
  int is_int;        /* DF_JSON_NUM written without '.', 'e' or 'E' and fits int64 */
  int64_t i64;       /* valid when is_int */
  char *str;         /* DF_JSON_STR: NUL-terminated UTF-8 (may hold \0 escapes: see len) */
  size_t len;        /* STR: bytes; ARR/OBJ: number of items */
  df_json *items;    /* ARR/OBJ: `len` values */
  char **keys;       /* OBJ: `len` keys, NUL-terminated */
};

df_json *df_json_parse(const char *text, size_t len, df_err *err);
void df_json_free(df_json *j);

/* Member of an object by key, or NULL (also when j is not an object). */
const df_json *df_json_get(const df_json *j, const char *key);

#endif

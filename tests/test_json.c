/*
** test_json.c -- the JSON reader: every kind of value, escapes, numbers,
** and malformed input that must give an error with the right offset
** (never a crash, even 1000 levels deep).
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/json.h"
#include "tests/check.h"

/* Parse a NUL-terminated text. */
static df_json *parse(const char *s, df_err *err) {
  df_err_clear(err);
  return df_json_parse(s, strlen(s), err);
}

/* Parse must fail; returns the message (in err) for CHECK_CONTAINS. */
static const char *parse_fail(const char *s, size_t len, df_err *err) {
  df_err_clear(err);
  df_json *j = df_json_parse(s, len, err);
  if (j) {
    df_json_free(j);
    return "(parsed without error)";
  }
  return err->code == DF_EFORMAT ? err->msg : "(wrong error code)";
}

static void test_scalars(void) {
  df_err err;
  df_json *j = parse("null", &err);
  CHECK(j && j->kind == DF_JSON_NULL);
  df_json_free(j);
  j = parse(" true ", &err);
  CHECK(j && j->kind == DF_JSON_BOOL && j->boolean == 1);
  df_json_free(j);
  j = parse("\tfalse\r\n", &err);
  CHECK(j && j->kind == DF_JSON_BOOL && j->boolean == 0);
  df_json_free(j);
  j = parse("\"hi\"", &err);
  CHECK(j && j->kind == DF_JSON_STR && j->len == 2 && strcmp(j->str, "hi") == 0);
  df_json_free(j);
  j = parse("\"\"", &err);
  CHECK(j && j->kind == DF_JSON_STR && j->len == 0 && j->str && j->str[0] == 0);
  df_json_free(j);
}

static void test_containers(void) {
  df_err err;
  df_json *j = parse("{\"b\": [1, 2.5, \"x\", null, true, {}, []], \"a\": {\"c\": false}}",
                     &err);
  CHECK(j && j->kind == DF_JSON_OBJ && j->len == 2);
  if (!j) return;
  CHECK(strcmp(j->keys[0], "b") == 0 && strcmp(j->keys[1], "a") == 0); /* file order */
  const df_json *b = df_json_get(j, "b");
  CHECK(b && b->kind == DF_JSON_ARR && b->len == 7);
  if (b && b->len == 7) {
    CHECK(b->items[0].kind == DF_JSON_NUM && b->items[0].is_int && b->items[0].i64 == 1);
    CHECK(b->items[1].kind == DF_JSON_NUM && !b->items[1].is_int && b->items[1].num == 2.5);
    CHECK(b->items[2].kind == DF_JSON_STR && strcmp(b->items[2].str, "x") == 0);
    CHECK(b->items[3].kind == DF_JSON_NULL);
    CHECK(b->items[4].kind == DF_JSON_BOOL && b->items[4].boolean);
    CHECK(b->items[5].kind == DF_JSON_OBJ && b->items[5].len == 0);
    CHECK(b->items[6].kind == DF_JSON_ARR && b->items[6].len == 0);
  }
  const df_json *c = df_json_get(df_json_get(j, "a"), "c");
  CHECK(c && c->kind == DF_JSON_BOOL && c->boolean == 0);
  CHECK(df_json_get(j, "zz") == NULL);
  CHECK(df_json_get(b, "b") == NULL); /* not an object */
  CHECK(df_json_get(NULL, "b") == NULL);
  df_json_free(j);

  /* 64 levels is the limit and is accepted */
  char deep[200];
  memset(deep, '[', 64);
  memset(deep + 64, ']', 64);
  deep[128] = 0;
  j = parse(deep, &err);
  CHECK(j && j->kind == DF_JSON_ARR && j->len == 1);
  df_json_free(j);

  /* many keys: the duplicate check must not be quadratic nor miss */
  size_t cap = 20000 * 16 + 16, n = 0;
  char *big = malloc(cap);
  CHECK(big != NULL);
  if (!big) return;
  big[n++] = '{';
  for (int i = 0; i < 20000; i++)
    n += (size_t)snprintf(big + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
  big[n++] = '}';
  j = df_json_parse(big, n, &err);
  CHECK(j && j->len == 20000);
  const df_json *k = df_json_get(j, "k12345");
  CHECK(k && k->is_int && k->i64 == 12345);
  df_json_free(j);
  /* same text with one key repeated at the end */
  n--;
  n += (size_t)snprintf(big + n, cap - n, ",\"k777\":0}");
  CHECK_CONTAINS(parse_fail(big, n, &err), "duplicate key 'k777'");
  free(big);
}

static void test_escapes(void) {
  df_err err;
  df_json *j = parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\"", &err);
  CHECK(j && j->kind == DF_JSON_STR && strcmp(j->str, "a\"b\\c/d\b\f\n\r\te") == 0);
  df_json_free(j);
  /* \u: 1-, 2-, 3-byte UTF-8 and a surrogate pair (U+1F600) */
  j = parse("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"", &err);
  CHECK(j && j->len == 1 + 2 + 3 + 4);
  CHECK(j && memcmp(j->str, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10) == 0);
  df_json_free(j);
  /* lone surrogates become U+FFFD */
  j = parse("\"\\ud800x\\udc00\"", &err);
  CHECK(j && j->len == 7 && memcmp(j->str, "\xef\xbf\xbdx\xef\xbf\xbd", 7) == 0);
  df_json_free(j);
  /* \u0000 inside a value: len counts it */
  j = parse("\"a\\u0000b\"", &err);
  CHECK(j && j->len == 3 && j->str[0] == 'a' && j->str[1] == 0 && j->str[2] == 'b');
  df_json_free(j);
  /* raw UTF-8 passes through */
  j = parse("\"caf\xc3\xa9\"", &err);
  CHECK(j && j->len == 5 && strcmp(j->str, "caf\xc3\xa9") == 0);
  df_json_free(j);
}

static void test_numbers(void) {
  df_err err;
  struct { const char *s; int is_int; int64_t i; double d; } cases[] = {
      {"0", 1, 0, 0.0},
      {"-0", 1, 0, 0.0},
      {"42", 1, 42, 42.0},
      {"-17", 1, -17, -17.0},
      {"9223372036854775807", 1, INT64_MAX, 9223372036854775807.0},
      {"-9223372036854775808", 1, INT64_MIN, -9223372036854775808.0},
      {"9223372036854775808", 0, 0, 9223372036854775808.0},
      {"-9223372036854775809", 0, 0, -9223372036854775809.0},
      {"123456789012345678901234567890", 0, 0, 123456789012345678901234567890.0},
      {"1.5", 0, 0, 1.5},
      {"-0.25", 0, 0, -0.25},
      {"1e3", 0, 0, 1000.0},
      {"2E-2", 0, 0, 0.02},
      {"-1.5e+2", 0, 0, -150.0},
      {"1.0", 0, 0, 1.0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    df_json *j = parse(cases[k].s, &err);
    CHECK(j && j->kind == DF_JSON_NUM);
    if (!j) continue;
    CHECK(j->is_int == cases[k].is_int);
    if (cases[k].is_int) CHECK(j->i64 == cases[k].i);
    CHECK(j->num == cases[k].d);
    df_json_free(j);
  }
  /* a number as long as a page */
  char longnum[5000];
  memset(longnum, '1', sizeof longnum - 1);
  longnum[1] = '.';
  longnum[sizeof longnum - 1] = 0;
  df_json *j = parse(longnum, &err);
  CHECK(j && !j->is_int && fabs(j->num - 1.1111111111) < 1e-9);
  df_json_free(j);
  /* not JSON numbers */
  CHECK_CONTAINS(parse_fail("01", 2, &err), "offset 0: leading zeros");
  CHECK_CONTAINS(parse_fail("1.", 2, &err), "offset 2: expected a digit");
  CHECK_CONTAINS(parse_fail("-", 1, &err), "offset 1: expected a digit");
  CHECK_CONTAINS(parse_fail(".5", 2, &err), "offset 0: expected a value");
  CHECK_CONTAINS(parse_fail("+1", 2, &err), "offset 0: expected a value");
  CHECK_CONTAINS(parse_fail("1e", 2, &err), "offset 2: expected a digit in the exponent");
  CHECK_CONTAINS(parse_fail("0x10", 4, &err), "offset 1");
  CHECK_CONTAINS(parse_fail("NaN", 3, &err), "offset 0");
  CHECK_CONTAINS(parse_fail("1e999", 5, &err), "out of the range");
}

static void test_errors(void) {
  df_err err;
  CHECK_CONTAINS(parse_fail("", 0, &err), "JSON: offset 0: expected a value, found end of input");
  CHECK_CONTAINS(parse_fail("   ", 3, &err), "offset 3: expected a value");
  CHECK_CONTAINS(parse_fail("[1,2,]", 6, &err), "offset 5: expected a value after ','");
  CHECK_CONTAINS(parse_fail("{\"a\":1,}", 8, &err), "offset 7: expected a string key after ','");
  CHECK_CONTAINS(parse_fail("[1 2]", 5, &err), "offset 3: expected ',' or ']'");
  CHECK_CONTAINS(parse_fail("{\"a\" 1}", 7, &err), "offset 5: expected ':' after object key");
  CHECK_CONTAINS(parse_fail("{1:2}", 5, &err), "offset 1: expected a string key");
  CHECK_CONTAINS(parse_fail("{\"a\":1", 6, &err), "offset 6: expected ',' or '}'");
  CHECK_CONTAINS(parse_fail("\"abc", 4, &err), "offset 0: unterminated string");
  CHECK_CONTAINS(parse_fail("\"abc\\", 5, &err), "unterminated string");
  CHECK_CONTAINS(parse_fail("\"a\\qb\"", 6, &err), "offset 2: invalid escape '\\q'");
  CHECK_CONTAINS(parse_fail("\"\\u12g4\"", 8, &err), "offset 1: bad \\u escape");
  CHECK_CONTAINS(parse_fail("\"\\u12\"", 6, &err), "bad \\u escape");
  CHECK_CONTAINS(parse_fail("\"a\nb\"", 5, &err), "offset 2: control character 0x0a");
  CHECK_CONTAINS(parse_fail("\"\xff\"", 3, &err), "offset 1: invalid UTF-8");
  CHECK_CONTAINS(parse_fail("\"\xc0\xaf\"", 4, &err), "invalid UTF-8");   /* overlong */
  CHECK_CONTAINS(parse_fail("\"\xed\xa0\x80\"", 5, &err), "invalid UTF-8"); /* surrogate */
  CHECK_CONTAINS(parse_fail("{\"a\":1,\"a\":2}", 13, &err),
                 "offset 7: duplicate key 'a'");
  CHECK_CONTAINS(parse_fail("{\"a\\u0000b\":1}", 14, &err), "key contains \\u0000");
  CHECK_CONTAINS(parse_fail("{} x", 4, &err), "offset 3: expected end of input after the value");
  CHECK_CONTAINS(parse_fail("truex", 5, &err), "offset 4: expected end of input");
  CHECK_CONTAINS(parse_fail("tru", 3, &err), "offset 0: expected 'true'");
  CHECK_CONTAINS(parse_fail("nul", 3, &err), "expected 'null'");
  CHECK_CONTAINS(parse_fail("[", 1, &err), "offset 1: expected a value, found end of input");
  CHECK_CONTAINS(parse_fail("]", 1, &err), "offset 0: expected a value, found ']'");

  /* NUL bytes: as trailing garbage, inside a string, before a value */
  CHECK_CONTAINS(parse_fail("{}\0", 3, &err), "offset 2: expected end of input after the value, found byte 0x00");
  CHECK_CONTAINS(parse_fail("\"a\0b\"", 5, &err), "offset 2: control character 0x00");
  CHECK_CONTAINS(parse_fail("\0", 1, &err), "offset 0: expected a value, found byte 0x00");
  /* the length is what counts, not a NUL: "1" followed by junk past len */
  df_json *j = df_json_parse("12345", 2, &err);
  CHECK(j && j->is_int && j->i64 == 12);
  df_json_free(j);

  /* 1000 levels of nesting: an error at the 65th, no crash */
  char deep[2001];
  for (int i = 0; i < 1000; i++) deep[i] = '[';
  for (int i = 1000; i < 2000; i++) deep[i] = ']';
  deep[2000] = 0;
  CHECK_CONTAINS(parse_fail(deep, 2000, &err), "offset 64: nesting deeper than 64 levels");
  char mixed[6 * 200];
  for (int i = 0; i < 200; i++) memcpy(mixed + 6 * i, "{\"a\":[", 6);
  CHECK_CONTAINS(parse_fail(mixed, sizeof mixed, &err), "offset 192: nesting deeper");
  char obj[5 * 100];
  for (int i = 0; i < 100; i++) memcpy(obj + 5 * i, "{\"a\":", 5);
  CHECK_CONTAINS(parse_fail(obj, 500, &err), "offset 320: nesting deeper");

  /* a NULL error record is allowed */
  CHECK(df_json_parse("[1,", 3, NULL) == NULL);
  df_json_free(NULL);
}

int main(void) {
  TEST(test_scalars);
  TEST(test_containers);
  TEST(test_escapes);
  TEST(test_numbers);
  TEST(test_errors);
  return check_exit();
}

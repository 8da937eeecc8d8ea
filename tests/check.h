/*
** check.h -- the assertions of the C test programs.
**
** A test program prints one line per check group: "ok NAME" or
** "not ok NAME: why" (and "skip NAME: why"); tests/run counts them.
** CHECK() records a failure in the current group and carries on.
*/
#ifndef DF_TEST_CHECK_H
#define DF_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failed_total = 0;
static int check_group_failed = 0;
static const char *check_group = NULL;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      if (!check_group_failed)                                               \
        printf("not ok %s: %s:%d: %s\n", check_group, __FILE__, __LINE__,    \
               #cond);                                                       \
      check_group_failed = 1;                                                \
    }                                                                        \
  } while (0)

/* CHECK that `haystack` contains `needle` (both strings). */
#define CHECK_CONTAINS(haystack, needle)                                      \
  do {                                                                        \
    const char *h_ = (haystack), *n_ = (needle);                              \
    if (!h_ || !strstr(h_, n_)) {                                             \
      if (!check_group_failed)                                                \
        printf("not ok %s: %s:%d: \"%s\" does not contain \"%s\"\n",          \
               check_group, __FILE__, __LINE__, h_ ? h_ : "(null)", n_);      \
      check_group_failed = 1;                                                 \
    }                                                                         \
  } while (0)

static inline void check_begin(const char *name) {
  check_group = name;
  check_group_failed = 0;
}

static inline void check_end(void) {
  if (!check_group_failed) printf("ok %s\n", check_group);
  else check_failed_total++;
  fflush(stdout);
}

/* Run one test function as a group. */
#define TEST(fn)                                                             \
  do {                                                                       \
    check_begin(#fn);                                                        \
    fn();                                                                    \
    check_end();                                                             \
  } while (0)

static inline int check_exit(void) { return check_failed_total ? 1 : 0; }

#endif

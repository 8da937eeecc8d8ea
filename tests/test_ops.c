/*
** test_ops.c -- the op table on the ref device: every op's shape rule and
** reference kernel on tiny hand-computed cases, awkward shapes (size-1,
** zero-size, rank 0), shape-rule errors at df_graph_add, run-time errors,
** and the live set / DOT writer.
**
** Expected values are written out by hand (or as the closed form of a
** known function, e.g. sin(1.0)); they are never computed by re-running
** the kernels' algorithms.  Values compare within 1e-12 relative (1e-15
** absolute near zero); NaN matches NaN and infinities must be equal.
** A failing comparison prints "#   ..." lines with what differed, just
** before the group's "not ok" line.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/graph.h"
#include "runtime/device.h"
#include "runtime/tensor.h"
#include "tests/check.h"

#define SRC_FILE "model.lua"
#define SRC_LINE 42

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define VALS(...) ((const double[]){__VA_ARGS__})
#define IDS(...) ((const df_node_id[]){__VA_ARGS__})

/* log 2 and log 3 to double precision */
#define LN2 0.6931471805599453
#define LN3 1.0986122886681098

/* ------------------------------------------------------------------ */
/* Building graphs                                                     */
/* ------------------------------------------------------------------ */

static df_attrs attrs_src(df_dtype dt, int ndim, const int64_t *shape) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.dtype = dt;
  a.ndim = ndim;
  for (int i = 0; i < ndim; i++) a.shape[i] = shape[i];
  return a;
}

static df_attrs attrs_ia(int n, const int64_t *ia) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = n;
  for (int i = 0; i < n; i++) a.ia[i] = ia[i];
  return a;
}

/* Add a node that must be accepted; an error is printed with the caller's
** line and fails the group. */
static df_node_id add_at(df_graph *g, df_op op, const df_node_id *ins, int n,
                         const df_attrs *a, int line) {
  df_err err;
  df_err_clear(&err);
  df_node_id id = df_graph_add(g, op, ins, n, a, SRC_FILE, SRC_LINE, &err);
  if (id < 0) printf("#   line %d: unexpected error: %s\n", line, err.msg);
  CHECK(id >= 0);
  return id;
}
#define ADD(g, op, ins, n, a) add_at((g), (op), (ins), (n), (a), __LINE__)

static df_node_id input_at(df_graph *g, const char *name, df_dtype dt, int ndim,
                           const int64_t *shape, int line) {
  df_attrs a = attrs_src(dt, ndim, shape);
  a.str = name;
  return add_at(g, DF_OP_INPUT, NULL, 0, &a, line);
}
#define INPUT(g, name, dt, ndim, shape) input_at((g), (name), (dt), (ndim), (shape), __LINE__)

#define OP1(g, op, x) add_at((g), (op), IDS(x), 1, NULL, __LINE__)
#define OP2(g, op, x, y) add_at((g), (op), IDS(x, y), 2, NULL, __LINE__)

/* An op of one input with integer attributes ia[0..n). */
static df_node_id opi_at(df_graph *g, df_op op, df_node_id x, int n, const int64_t *ia,
                         int line) {
  df_attrs a = attrs_ia(n, ia);
  return add_at(g, op, IDS(x), 1, &a, line);
}
#define OPI(g, op, x, n, ia) opi_at((g), (op), (x), (n), (ia), __LINE__)

/* Try to add a node that must be refused: -1, the graph unchanged, and an
** error recorded in err.  Returns 1 if so. */
static int add_fails(df_graph *g, df_op op, const df_node_id *ins, int n, const df_attrs *a,
                     df_err *err) {
  int before = df_graph_count(g);
  df_err_clear(err);
  df_node_id id = df_graph_add(g, op, ins, n, a, SRC_FILE, SRC_LINE, err);
  if (id != -1) printf("#   %s was accepted (node %d)\n", df_op_name(op), id);
  return id == -1 && df_graph_count(g) == before && err->code != 0;
}

/* ------------------------------------------------------------------ */
/* Running graphs on ref                                               */
/* ------------------------------------------------------------------ */

typedef struct feed {
  const char *name;
  df_dtype dt;
  int ndim;
  const int64_t *shape;
  const double *v; /* numel values (NULL when numel is 0) */
} feed;

#define MAX_FEEDS 8

static df_tensor *make_tensor(const feed *f) {
  df_err err;
  df_err_clear(&err);
  df_tensor *t = df_tensor_new(f->dt, f->ndim, f->shape, &err);
  if (!t) {
    printf("#   df_tensor_new failed: %s\n", err.msg);
    return NULL;
  }
  int64_t n = df_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) df_dtype_set(f->dt, t->data, (size_t)i, f->v[i]);
  return t;
}

/* Compile `outs` on ref and run with `feeds`; res[i] get new tensors (NULL
** on failure).  Returns 0 or the error code (message in err). */
static int run_graph(const df_graph *g, const df_node_id *outs, int nout, const feed *feeds,
                     int nf, df_tensor **res, df_err *err) {
  df_binding b[MAX_FEEDS];
  df_tensor *t[MAX_FEEDS];
  int rc = 0;
  df_err_clear(err);
  for (int i = 0; i < nout; i++) res[i] = NULL;
  for (int i = 0; i < nf; i++) {
    t[i] = make_tensor(&feeds[i]);
    b[i].name = feeds[i].name;
    b[i].tensor = t[i];
    if (!t[i]) rc = -1;
  }
  if (rc == 0) {
    df_plan *p = df_device_ref.compile(g, outs, nout, err);
    if (!p) {
      rc = err->code ? err->code : -1;
    } else {
      rc = df_device_ref.run(p, b, nf, res, err);
      df_device_ref.plan_free(p);
    }
  }
  for (int i = 0; i < nf; i++) df_tensor_unref(t[i]);
  return rc;
}

static int close_to(double got, double want) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= 1e-12 * fabs(want) + 1e-15;
}

/* Does t have this dtype, shape and these values?  Prints what differs. */
static int tensor_is(const df_tensor *t, df_dtype dt, int ndim, const int64_t *shape,
                     const double *v) {
  char s1[160], s2[160];
  if (!t) {
    printf("#   no tensor\n");
    return 0;
  }
  if (t->dtype != dt) {
    printf("#   dtype %s, want %s\n", df_dtype_lname(t->dtype), df_dtype_lname(dt));
    return 0;
  }
  int same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
  if (!same) {
    printf("#   shape %s, want %s\n", df_shape_str(s1, sizeof s1, t->ndim, t->shape),
           df_shape_str(s2, sizeof s2, ndim, shape));
    return 0;
  }
  int64_t n = df_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double got = df_dtype_get(t->dtype, t->data, (size_t)i);
    if (!close_to(got, v[i])) {
      printf("#   element %lld: got %.17g, want %.17g\n", (long long)i, got, v[i]);
      return 0;
    }
  }
  return 1;
}

/* Run one output and compare it; 1 when it matches. */
static int run_is(const df_graph *g, df_node_id out, const feed *feeds, int nf, df_dtype dt,
                  int ndim, const int64_t *shape, const double *v) {
  df_tensor *res = NULL;
  df_err err;
  if (run_graph(g, &out, 1, feeds, nf, &res, &err)) {
    printf("#   run failed: %s\n", err.msg);
    return 0;
  }
  int ok = tensor_is(res, dt, ndim, shape, v);
  df_tensor_unref(res);
  return ok;
}

/* Run one output that must fail: 1 when run returns an error and no
** tensor; the message is left in err. */
static int run_fails(const df_graph *g, df_node_id out, const feed *feeds, int nf,
                     df_err *err) {
  df_tensor *res = NULL;
  int rc = run_graph(g, &out, 1, feeds, nf, &res, err);
  if (rc == 0) printf("#   run succeeded where it should fail\n");
  int ok = rc != 0 && res == NULL && err->msg[0] != '\0';
  df_tensor_unref(res);
  return ok;
}

/* CHECK a helper's verdict at the caller's line. */
#define EXPECT(call)                                                         \
  do {                                                                       \
    int expect_ok_ = (call);                                                 \
    CHECK(expect_ok_);                                                       \
  } while (0)

/* The inferred shape of a node, as "[2, 3]". */
static const char *node_shape(const df_graph *g, df_node_id id, char *buf, size_t n) {
  if (id < 0 || id >= df_graph_count(g)) return "(no node)";
  return df_node_shape_str(df_graph_node(g, id), buf, n);
}

/* ------------------------------------------------------------------ */
/* Sources                                                             */
/* ------------------------------------------------------------------ */

static void test_fill(void) {
  df_graph *g = df_graph_new();
  df_attrs a = attrs_src(DF_F64, 2, SH(2, 2));
  a.nfa = 1;
  a.fa[0] = 2.5;
  df_node_id f = ADD(g, DF_OP_FILL, NULL, 0, &a);
  CHECK(df_graph_node(g, f)->dtype == DF_F64 && df_graph_node(g, f)->ndim == 2);
  EXPECT(run_is(g, f, NULL, 0, DF_F64, 2, SH(2, 2), VALS(2.5, 2.5, 2.5, 2.5)));

  a = attrs_src(DF_I64, 1, SH(3));
  a.nfa = 1;
  a.fa[0] = -3;
  f = ADD(g, DF_OP_FILL, NULL, 0, &a);
  EXPECT(run_is(g, f, NULL, 0, DF_I64, 1, SH(3), VALS(-3, -3, -3)));

  /* a scalar f32 fill: the output holds the float32 value */
  a = attrs_src(DF_F32, 0, NULL);
  a.nfa = 1;
  a.fa[0] = 0.1;
  f = ADD(g, DF_OP_FILL, NULL, 0, &a);
  EXPECT(run_is(g, f, NULL, 0, DF_F32, 0, NULL, VALS(0.10000000149011612)));
  df_graph_free(g);
}

static void test_iota(void) {
  df_graph *g = df_graph_new();
  df_attrs a = attrs_src(DF_I64, 2, SH(2, 3));
  a.nia = 1;
  a.ia[0] = 1;
  df_node_id i1 = ADD(g, DF_OP_IOTA, NULL, 0, &a);
  EXPECT(run_is(g, i1, NULL, 0, DF_I64, 2, SH(2, 3), VALS(0, 1, 2, 0, 1, 2)));
  a.ia[0] = 0;
  df_node_id i0 = ADD(g, DF_OP_IOTA, NULL, 0, &a);
  EXPECT(run_is(g, i0, NULL, 0, DF_I64, 2, SH(2, 3), VALS(0, 0, 0, 1, 1, 1)));
  a.ia[0] = -1;
  df_node_id im = ADD(g, DF_OP_IOTA, NULL, 0, &a);
  EXPECT(run_is(g, im, NULL, 0, DF_I64, 2, SH(2, 3), VALS(0, 1, 2, 0, 1, 2)));
  a = attrs_src(DF_F64, 3, SH(2, 2, 2));
  a.nia = 1;
  a.ia[0] = 1;
  df_node_id i3 = ADD(g, DF_OP_IOTA, NULL, 0, &a);
  EXPECT(run_is(g, i3, NULL, 0, DF_F64, 3, SH(2, 2, 2), VALS(0, 0, 1, 1, 0, 0, 1, 1)));
  df_graph_free(g);
}

static void test_sinusoid(void) {
  /* C = 4: angle(p, j) = p / 10000^(2 floor(j/2) / 4), i.e. p for j = 0, 1
  ** and p / 100 for j = 2, 3; even j sin, odd j cos; float32 values. */
  const double want[12] = {
      0.0, 1.0, 0.0, 1.0,
      (float)sin(1.0), (float)cos(1.0), (float)sin(0.01), (float)cos(0.01),
      (float)sin(2.0), (float)cos(2.0), (float)sin(0.02), (float)cos(0.02)};
  df_graph *g = df_graph_new();
  df_attrs a = attrs_src(DF_F32, 2, SH(3, 4));
  df_node_id s = ADD(g, DF_OP_SINUSOID, NULL, 0, &a);
  EXPECT(run_is(g, s, NULL, 0, DF_F32, 2, SH(3, 4), want));
  /* in an f64 graph the values are still rounded to float32 */
  a = attrs_src(DF_F64, 2, SH(3, 4));
  df_node_id s64 = ADD(g, DF_OP_SINUSOID, NULL, 0, &a);
  EXPECT(run_is(g, s64, NULL, 0, DF_F64, 2, SH(3, 4), want));
  CHECK((double)(float)sin(1.0) != sin(1.0)); /* the rounding is visible */
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Elementwise                                                         */
/* ------------------------------------------------------------------ */

/* y = op(x) over an f64 vector of n values. */
static int unary_is(df_op op, int n, const double *in, const double *want) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 1, SH(n));
  df_node_id y = OP1(g, op, x);
  feed f = {"x", DF_F64, 1, SH(n), in};
  int ok = run_is(g, y, &f, 1, DF_F64, 1, SH(n), want);
  if (!ok) printf("#   (op %s)\n", df_op_name(op));
  df_graph_free(g);
  return ok;
}

static void test_unary(void) {
  EXPECT(unary_is(DF_OP_NEG, 4, VALS(1.5, -2, 0, INFINITY), VALS(-1.5, 2, 0, -INFINITY)));
  EXPECT(unary_is(DF_OP_EXP, 4, VALS(0, 1, -1, 2),
                  VALS(1, 2.718281828459045, 0.36787944117144233, 7.38905609893065)));
  EXPECT(unary_is(DF_OP_LOG, 6, VALS(1, 2.718281828459045, 0.5, 100, 0, -1),
                  VALS(0, 1, -0.6931471805599453, 4.605170185988092, -INFINITY, NAN)));
  EXPECT(unary_is(DF_OP_SQRT, 4, VALS(4, 2, 0, 0.25), VALS(2, 1.4142135623730951, 0, 0.5)));
  EXPECT(unary_is(DF_OP_RSQRT, 3, VALS(4, 0.25, 2), VALS(0.5, 2, 0.7071067811865476)));
  EXPECT(unary_is(DF_OP_TANH, 3, VALS(0, 1, -2),
                  VALS(0, 0.7615941559557649, -0.9640275800758169)));
  EXPECT(unary_is(DF_OP_ERF, 4, VALS(0, 1, -0.5, 3),
                  VALS(0, 0.8427007929497149, -0.5204998778130465, 0.9999779095030014)));
  EXPECT(unary_is(DF_OP_ABS, 4, VALS(-3, 2.5, 0, -INFINITY), VALS(3, 2.5, 0, INFINITY)));
  EXPECT(unary_is(DF_OP_RECIP, 4, VALS(2, -4, 0.1, 0), VALS(0.5, -0.25, 10, INFINITY)));

  /* the dtype carries through: exp of f32 is f32 */
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F32, 1, SH(2));
  df_node_id y = OP1(g, DF_OP_EXP, x);
  CHECK(df_graph_node(g, y)->dtype == DF_F32);
  feed f = {"x", DF_F32, 1, SH(2), VALS(0, 1)};
  EXPECT(run_is(g, y, &f, 1, DF_F32, 1, SH(2), VALS(1, (float)2.718281828459045)));
  df_graph_free(g);
}

static void test_cast(void) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F32, 1, SH(6));
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.dtype = DF_I64;
  df_node_id xi = ADD(g, DF_OP_CAST, IDS(x), 1, &a);
  a.dtype = DF_BOOL;
  df_node_id xb = ADD(g, DF_OP_CAST, IDS(x), 1, &a);
  feed f = {"x", DF_F32, 1, SH(6), VALS(-1.7, 1.7, -0.5, 2.0, 0, -2.9)};
  /* float -> int truncates toward zero */
  EXPECT(run_is(g, xi, &f, 1, DF_I64, 1, SH(6), VALS(-1, 1, 0, 2, 0, -2)));
  /* any -> bool is x != 0 */
  EXPECT(run_is(g, xb, &f, 1, DF_BOOL, 1, SH(6), VALS(1, 1, 1, 1, 0, 1)));
  df_graph_free(g);

  /* f64 -> f32 rounds inside the graph: cast back to f64 keeps the
  ** float32 value */
  g = df_graph_new();
  x = INPUT(g, "x", DF_F64, 1, SH(3));
  a.dtype = DF_F32;
  df_node_id x32 = ADD(g, DF_OP_CAST, IDS(x), 1, &a);
  a.dtype = DF_F64;
  df_node_id back = ADD(g, DF_OP_CAST, IDS(x32), 1, &a);
  feed f2 = {"x", DF_F64, 1, SH(3), VALS(0.1, 1.5, -1e-3)};
  EXPECT(run_is(g, back, &f2, 1, DF_F64, 1, SH(3),
                VALS(0.10000000149011612, 1.5, -0.0010000000474974513)));
  df_graph_free(g);

  /* i64 -> f64 and bool -> i64 are exact */
  g = df_graph_new();
  x = INPUT(g, "n", DF_I64, 1, SH(3));
  a.dtype = DF_F64;
  df_node_id nf = ADD(g, DF_OP_CAST, IDS(x), 1, &a);
  feed f3 = {"n", DF_I64, 1, SH(3), VALS(3, -2, 1 << 30)};
  EXPECT(run_is(g, nf, &f3, 1, DF_F64, 1, SH(3), VALS(3, -2, 1 << 30)));
  df_node_id m = INPUT(g, "m", DF_BOOL, 1, SH(3));
  a.dtype = DF_I64;
  df_node_id mi = ADD(g, DF_OP_CAST, IDS(m), 1, &a);
  feed f4 = {"m", DF_BOOL, 1, SH(3), VALS(1, 0, 1)};
  EXPECT(run_is(g, mi, &f4, 1, DF_I64, 1, SH(3), VALS(1, 0, 1)));
  df_graph_free(g);
}

/* z = op(a, b) for f64 inputs of the given shapes. */
static int binary_is(df_op op, int na, const int64_t *sa, const double *va, int nb,
                     const int64_t *sb, const double *vb, int nz, const int64_t *sz,
                     const double *want) {
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_F64, na, sa);
  df_node_id b = INPUT(g, "b", DF_F64, nb, sb);
  df_node_id z = OP2(g, op, a, b);
  feed f[2] = {{"a", DF_F64, na, sa, va}, {"b", DF_F64, nb, sb, vb}};
  int ok = run_is(g, z, f, 2, DF_F64, nz, sz, want);
  if (!ok) printf("#   (op %s)\n", df_op_name(op));
  df_graph_free(g);
  return ok;
}

static void test_binary_broadcast(void) {
  const double *a23 = VALS(1, 2, 3, 4, 5, 6), *b3 = VALS(10, 20, 30);
  /* [2, 3] op [3] */
  EXPECT(binary_is(DF_OP_ADD, 2, SH(2, 3), a23, 1, SH(3), b3, 2, SH(2, 3),
                   VALS(11, 22, 33, 14, 25, 36)));
  EXPECT(binary_is(DF_OP_SUB, 2, SH(2, 3), a23, 1, SH(3), b3, 2, SH(2, 3),
                   VALS(-9, -18, -27, -6, -15, -24)));
  /* [3] op [2, 3]: the operand order is kept */
  EXPECT(binary_is(DF_OP_SUB, 1, SH(3), b3, 2, SH(2, 3), a23, 2, SH(2, 3),
                   VALS(9, 18, 27, 6, 15, 24)));
  /* [2, 1] op [1, 3] */
  EXPECT(binary_is(DF_OP_MUL, 2, SH(2, 1), VALS(2, 3), 2, SH(1, 3), VALS(1, 10, 100), 2,
                   SH(2, 3), VALS(2, 20, 200, 3, 30, 300)));
  EXPECT(binary_is(DF_OP_DIV, 2, SH(2, 1), VALS(1, 6), 2, SH(1, 3), VALS(1, 2, 4), 2,
                   SH(2, 3), VALS(1, 0.5, 0.25, 6, 3, 1.5)));
  /* scalar [] op [2, 2] and [2, 2] op [] */
  const double *s = VALS(2), *x22 = VALS(1, 2, 3, 4);
  EXPECT(binary_is(DF_OP_MAX, 0, NULL, s, 2, SH(2, 2), x22, 2, SH(2, 2), VALS(2, 2, 3, 4)));
  EXPECT(binary_is(DF_OP_MIN, 0, NULL, s, 2, SH(2, 2), x22, 2, SH(2, 2), VALS(1, 2, 2, 2)));
  EXPECT(binary_is(DF_OP_POW, 0, NULL, s, 2, SH(2, 2), x22, 2, SH(2, 2), VALS(2, 4, 8, 16)));
  EXPECT(binary_is(DF_OP_POW, 2, SH(2, 2), x22, 0, NULL, s, 2, SH(2, 2), VALS(1, 4, 9, 16)));
  EXPECT(binary_is(DF_OP_SUB, 0, NULL, s, 2, SH(2, 2), x22, 2, SH(2, 2), VALS(1, 0, -1, -2)));
  EXPECT(binary_is(DF_OP_DIV, 2, SH(2, 2), x22, 0, NULL, s, 2, SH(2, 2),
                   VALS(0.5, 1, 1.5, 2)));
  EXPECT(binary_is(DF_OP_ADD, 0, NULL, s, 2, SH(2, 2), x22, 2, SH(2, 2), VALS(3, 4, 5, 6)));
  /* rank 3: [2, 1, 2] + [3, 1] -> [2, 3, 2] */
  EXPECT(binary_is(DF_OP_ADD, 3, SH(2, 1, 2), VALS(1, 2, 3, 4), 2, SH(3, 1), b3, 3,
                   SH(2, 3, 2), VALS(11, 12, 21, 22, 31, 32, 13, 14, 23, 24, 33, 34)));
  /* max / min propagate NaN from either side */
  EXPECT(binary_is(DF_OP_MAX, 1, SH(3), VALS(NAN, 1, 5), 1, SH(3), VALS(0, NAN, 2), 1, SH(3),
                   VALS(NAN, NAN, 5)));
  EXPECT(binary_is(DF_OP_MIN, 1, SH(3), VALS(NAN, 1, 5), 1, SH(3), VALS(0, NAN, 2), 1, SH(3),
                   VALS(NAN, NAN, 2)));
}

static void test_int_div(void) {
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_I64, 1, SH(5));
  df_node_id b = INPUT(g, "b", DF_I64, 1, SH(5));
  df_node_id q = OP2(g, DF_OP_DIV, a, b);
  CHECK(df_graph_node(g, q)->dtype == DF_I64);
  feed f[2] = {{"a", DF_I64, 1, SH(5), VALS(7, -7, 7, -7, 6)},
               {"b", DF_I64, 1, SH(5), VALS(2, 2, -2, -2, 3)}};
  /* truncation toward zero, as C */
  EXPECT(run_is(g, q, f, 2, DF_I64, 1, SH(5), VALS(3, -3, -3, 3, 2)));
  df_node_id s = INPUT(g, "s", DF_I64, 0, NULL);
  df_node_id q2 = OP2(g, DF_OP_DIV, a, s);
  feed f2[2] = {{"a", DF_I64, 1, SH(5), VALS(9, -9, 10, 3, -1)},
                {"s", DF_I64, 0, NULL, VALS(4)}};
  EXPECT(run_is(g, q2, f2, 2, DF_I64, 1, SH(5), VALS(2, -2, 2, 0, 0)));
  df_graph_free(g);

  g = df_graph_new();
  a = INPUT(g, "a", DF_I32, 1, SH(2));
  b = INPUT(g, "b", DF_I32, 1, SH(2));
  q = OP2(g, DF_OP_DIV, a, b);
  df_node_id m = OP2(g, DF_OP_MUL, a, b);
  feed f3[2] = {{"a", DF_I32, 1, SH(2), VALS(7, -7)}, {"b", DF_I32, 1, SH(2), VALS(2, 2)}};
  EXPECT(run_is(g, q, f3, 2, DF_I32, 1, SH(2), VALS(3, -3)));
  EXPECT(run_is(g, m, f3, 2, DF_I32, 1, SH(2), VALS(14, -14)));
  df_graph_free(g);
}

static void test_compare(void) {
  static const df_op ops[6] = {DF_OP_EQ, DF_OP_NE, DF_OP_LT, DF_OP_LE, DF_OP_GT, DF_OP_GE};
  static const double want[6][4] = {{0, 1, 0, 0}, {1, 0, 1, 1}, {1, 0, 0, 0},
                                    {1, 1, 0, 0}, {0, 0, 1, 0}, {0, 1, 1, 0}};
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_F64, 1, SH(4));
  df_node_id b = INPUT(g, "b", DF_F64, 1, SH(4));
  feed f[2] = {{"a", DF_F64, 1, SH(4), VALS(1, 2, 3, NAN)},
               {"b", DF_F64, 1, SH(4), VALS(2, 2, 2, NAN)}};
  for (int k = 0; k < 6; k++) {
    df_node_id c = OP2(g, ops[k], a, b);
    CHECK(df_graph_node(g, c)->dtype == DF_BOOL);
    EXPECT(run_is(g, c, f, 2, DF_BOOL, 1, SH(4), want[k]));
  }
  df_graph_free(g);

  /* broadcasting, on i64: [2, 1] < [3] -> [2, 3] bool */
  g = df_graph_new();
  a = INPUT(g, "a", DF_I64, 2, SH(2, 1));
  b = INPUT(g, "b", DF_I64, 1, SH(3));
  df_node_id c = OP2(g, DF_OP_LT, a, b);
  feed f2[2] = {{"a", DF_I64, 2, SH(2, 1), VALS(1, 3)}, {"b", DF_I64, 1, SH(3), VALS(1, 2, 3)}};
  EXPECT(run_is(g, c, f2, 2, DF_BOOL, 2, SH(2, 3), VALS(0, 1, 1, 0, 0, 0)));
  df_graph_free(g);
}

static void test_where(void) {
  df_graph *g = df_graph_new();
  df_node_id c = INPUT(g, "c", DF_BOOL, 2, SH(2, 1));
  df_node_id a = INPUT(g, "a", DF_F64, 2, SH(2, 3));
  df_node_id s = INPUT(g, "s", DF_F64, 0, NULL);
  df_node_id w = add_at(g, DF_OP_WHERE, IDS(c, a, s), 3, NULL, __LINE__);
  feed f[3] = {{"c", DF_BOOL, 2, SH(2, 1), VALS(1, 0)},
               {"a", DF_F64, 2, SH(2, 3), VALS(1, 2, 3, 4, 5, 6)},
               {"s", DF_F64, 0, NULL, VALS(-1)}};
  EXPECT(run_is(g, w, f, 3, DF_F64, 2, SH(2, 3), VALS(1, 2, 3, -1, -1, -1)));
  df_graph_free(g);

  g = df_graph_new();
  c = INPUT(g, "c", DF_BOOL, 1, SH(3));
  a = INPUT(g, "a", DF_F64, 2, SH(2, 3));
  df_node_id b = INPUT(g, "b", DF_F64, 2, SH(2, 3));
  w = add_at(g, DF_OP_WHERE, IDS(c, a, b), 3, NULL, __LINE__);
  feed f2[3] = {{"c", DF_BOOL, 1, SH(3), VALS(1, 0, 1)},
                {"a", DF_F64, 2, SH(2, 3), VALS(1, 2, 3, 4, 5, 6)},
                {"b", DF_F64, 2, SH(2, 3), VALS(10, 20, 30, 40, 50, 60)}};
  EXPECT(run_is(g, w, f2, 3, DF_F64, 2, SH(2, 3), VALS(1, 20, 3, 4, 50, 6)));
  df_graph_free(g);

  /* relu built in the graph: where(x > 0, x, 0) */
  g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 1, SH(4));
  df_attrs za = attrs_src(DF_F64, 0, NULL);
  df_node_id zero = ADD(g, DF_OP_FILL, NULL, 0, &za);
  df_node_id pos = OP2(g, DF_OP_GT, x, zero);
  w = add_at(g, DF_OP_WHERE, IDS(pos, x, zero), 3, NULL, __LINE__);
  feed f3 = {"x", DF_F64, 1, SH(4), VALS(-1, 2, -3, 4)};
  EXPECT(run_is(g, w, &f3, 1, DF_F64, 1, SH(4), VALS(0, 2, 0, 4)));
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Matmul                                                              */
/* ------------------------------------------------------------------ */

/* a (shape sa) x b (shape sb) with transpose flags; compares to want. */
static int matmul_is(int ta, int tb, int na, const int64_t *sa, const double *va, int nb,
                     const int64_t *sb, const double *vb, int nz, const int64_t *sz,
                     const double *want) {
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_F64, na, sa);
  df_node_id b = INPUT(g, "b", DF_F64, nb, sb);
  df_attrs at = attrs_ia(2, SH(ta, tb));
  df_node_id z = add_at(g, DF_OP_MATMUL, IDS(a, b), 2, &at, __LINE__);
  feed f[2] = {{"a", DF_F64, na, sa, va}, {"b", DF_F64, nb, sb, vb}};
  int ok = run_is(g, z, f, 2, DF_F64, nz, sz, want);
  df_graph_free(g);
  return ok;
}

static void test_matmul(void) {
  /* A = [[1, 2, 3], [4, 5, 6]], B = [[7, 8], [9, 10], [11, 12]]:
  ** AB = [[58, 64], [139, 154]] */
  const double *A = VALS(1, 2, 3, 4, 5, 6), *B = VALS(7, 8, 9, 10, 11, 12);
  const double *At = VALS(1, 4, 2, 5, 3, 6), *Bt = VALS(7, 9, 11, 8, 10, 12);
  const double *AB = VALS(58, 64, 139, 154);
  EXPECT(matmul_is(0, 0, 2, SH(2, 3), A, 2, SH(3, 2), B, 2, SH(2, 2), AB));
  EXPECT(matmul_is(1, 0, 2, SH(3, 2), At, 2, SH(3, 2), B, 2, SH(2, 2), AB));
  EXPECT(matmul_is(0, 1, 2, SH(2, 3), A, 2, SH(2, 3), Bt, 2, SH(2, 2), AB));
  EXPECT(matmul_is(1, 1, 2, SH(3, 2), At, 2, SH(2, 3), Bt, 2, SH(2, 2), AB));
  /* a non-square product: [3, 2] x [2, 3] */
  EXPECT(matmul_is(0, 0, 2, SH(3, 2), At, 2, SH(2, 3), A, 2, SH(3, 3),
                   VALS(17, 22, 27, 22, 29, 36, 27, 36, 45)));
  /* batched [2, 2, 3] x [3, 2]: batch 1 is [[1, 0, 0], [0, 1, 1]] */
  const double *A2 = VALS(1, 2, 3, 4, 5, 6, 1, 0, 0, 0, 1, 1);
  const double *A2B = VALS(58, 64, 139, 154, 7, 8, 20, 22);
  EXPECT(matmul_is(0, 0, 3, SH(2, 2, 3), A2, 2, SH(3, 2), B, 3, SH(2, 2, 2), A2B));
  EXPECT(matmul_is(0, 0, 3, SH(2, 2, 3), A2, 3, SH(1, 3, 2), B, 3, SH(2, 2, 2), A2B));
  /* [1, 2, 3] x [4, 3, 2]: the batch of a broadcasts */
  const double *B4 = VALS(7, 8, 9, 10, 11, 12, /* B */
                          1, 0, 0, 1, 0, 0,    /* picks columns 0, 1 of A */
                          0, 0, 0, 0, 1, 1,    /* column 2 twice */
                          1, 1, 1, 1, 1, 1);   /* row sums */
  EXPECT(matmul_is(0, 0, 3, SH(1, 2, 3), A, 3, SH(4, 3, 2), B4, 3, SH(4, 2, 2),
                   VALS(58, 64, 139, 154, 1, 2, 4, 5, 3, 3, 6, 6, 6, 6, 15, 15)));
  /* batched with both transposes: [2, 3, 2]^T x [1, 2, 3]^T */
  const double *A2t = VALS(1, 4, 2, 5, 3, 6, 1, 0, 0, 1, 0, 1);
  EXPECT(matmul_is(1, 1, 3, SH(2, 3, 2), A2t, 3, SH(1, 2, 3), Bt, 3, SH(2, 2, 2), A2B));
  /* two batch dims broadcasting both ways: [2, 1, 1, 2] x [3, 2, 1] */
  EXPECT(matmul_is(0, 0, 4, SH(2, 1, 1, 2), VALS(1, 2, 3, 4), 3, SH(3, 2, 1),
                   VALS(1, 0, 0, 1, 1, 1), 4, SH(2, 3, 1, 1), VALS(1, 2, 3, 3, 4, 7)));

  /* the inferred shape */
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_F32, 3, SH(1, 2, 3));
  df_node_id b = INPUT(g, "b", DF_F32, 3, SH(4, 3, 5));
  df_node_id z = OP2(g, DF_OP_MATMUL, a, b);
  char sb[64];
  CHECK(strcmp(node_shape(g, z, sb, sizeof sb), "[4, 2, 5]") == 0);
  CHECK(df_graph_node(g, z)->dtype == DF_F32);
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Reductions                                                          */
/* ------------------------------------------------------------------ */

/* op(x) over the axes in `mask` (ia[1] = keep, ia[2] = correction). */
static int reduce_is(df_op op, int64_t mask, int keep, int corr, df_dtype dt, int nx,
                     const int64_t *sx, const double *vx, int nz, const int64_t *sz,
                     const double *want) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", dt, nx, sx);
  df_node_id r = OPI(g, op, x, 3, SH(mask, keep, corr));
  feed f = {"x", dt, nx, sx, vx};
  int ok = run_is(g, r, &f, 1, dt, nz, sz, want);
  if (!ok) printf("#   (%s mask %lld keep %d)\n", df_op_name(op), (long long)mask, keep);
  df_graph_free(g);
  return ok;
}

static void test_reduce(void) {
  const int64_t *s23 = SH(2, 3);
  const double *x = VALS(1, 2, 3, 4, 5, 6);
  EXPECT(reduce_is(DF_OP_SUM, 1, 0, 0, DF_F64, 2, s23, x, 1, SH(3), VALS(5, 7, 9)));
  EXPECT(reduce_is(DF_OP_SUM, 1, 1, 0, DF_F64, 2, s23, x, 2, SH(1, 3), VALS(5, 7, 9)));
  EXPECT(reduce_is(DF_OP_SUM, 2, 0, 0, DF_F64, 2, s23, x, 1, SH(2), VALS(6, 15)));
  EXPECT(reduce_is(DF_OP_SUM, 2, 1, 0, DF_F64, 2, s23, x, 2, SH(2, 1), VALS(6, 15)));
  EXPECT(reduce_is(DF_OP_SUM, 3, 0, 0, DF_F64, 2, s23, x, 0, NULL, VALS(21)));
  EXPECT(reduce_is(DF_OP_SUM, 3, 1, 0, DF_F64, 2, s23, x, 2, SH(1, 1), VALS(21)));
  EXPECT(reduce_is(DF_OP_MEAN, 2, 0, 0, DF_F64, 2, s23, x, 1, SH(2), VALS(2, 5)));
  EXPECT(reduce_is(DF_OP_MEAN, 1, 1, 0, DF_F64, 2, s23, x, 2, SH(1, 3), VALS(2.5, 3.5, 4.5)));
  EXPECT(reduce_is(DF_OP_MEAN, 3, 0, 0, DF_F64, 2, s23, x, 0, NULL, VALS(3.5)));
  const double *x2 = VALS(1, 5, 3, -4, -2, -8);
  EXPECT(reduce_is(DF_OP_AMAX, 2, 0, 0, DF_F64, 2, s23, x2, 1, SH(2), VALS(5, -2)));
  EXPECT(reduce_is(DF_OP_AMAX, 1, 0, 0, DF_F64, 2, s23, x2, 1, SH(3), VALS(1, 5, 3)));
  EXPECT(reduce_is(DF_OP_AMAX, 3, 1, 0, DF_F64, 2, s23, x2, 2, SH(1, 1), VALS(5)));
  /* rank 3, axes {0, 2} and {1, 2} of 1..8 */
  const double *x3 = VALS(1, 2, 3, 4, 5, 6, 7, 8);
  EXPECT(reduce_is(DF_OP_SUM, 5, 0, 0, DF_F64, 3, SH(2, 2, 2), x3, 1, SH(2), VALS(14, 22)));
  EXPECT(reduce_is(DF_OP_SUM, 5, 1, 0, DF_F64, 3, SH(2, 2, 2), x3, 3, SH(1, 2, 1),
                   VALS(14, 22)));
  EXPECT(reduce_is(DF_OP_MEAN, 6, 0, 0, DF_F64, 3, SH(2, 2, 2), x3, 1, SH(2), VALS(2.5, 6.5)));
  EXPECT(reduce_is(DF_OP_AMAX, 2, 0, 0, DF_F64, 3, SH(2, 2, 2), VALS(1, 9, 3, 4, 5, 6, 8, 7),
                   2, SH(2, 2), VALS(3, 9, 8, 7)));
  /* integers: sum and amax keep the dtype */
  EXPECT(reduce_is(DF_OP_AMAX, 2, 0, 0, DF_I64, 2, SH(2, 2), VALS(1, 7, 3, 2), 1, SH(2),
                   VALS(7, 3)));
  EXPECT(reduce_is(DF_OP_SUM, 1, 0, 0, DF_I64, 2, SH(2, 2), VALS(1, 7, 3, 2), 1, SH(2),
                   VALS(4, 9)));
}

static void test_var(void) {
  const int64_t *s24 = SH(2, 4);
  /* rows: mean 2.5, squared deviations 5; mean 5, squared deviations 20 */
  const double *x = VALS(1, 2, 3, 4, 2, 4, 6, 8);
  EXPECT(reduce_is(DF_OP_VAR, 2, 0, 1, DF_F64, 2, s24, x, 1, SH(2), VALS(5.0 / 3, 20.0 / 3)));
  EXPECT(reduce_is(DF_OP_VAR, 2, 0, 0, DF_F64, 2, s24, x, 1, SH(2), VALS(1.25, 5)));
  EXPECT(reduce_is(DF_OP_VAR, 2, 1, 1, DF_F64, 2, s24, x, 2, SH(2, 1), VALS(5.0 / 3, 20.0 / 3)));
  /* columns: pairs (1,2) (2,4) (3,6) (4,8) */
  EXPECT(reduce_is(DF_OP_VAR, 1, 0, 1, DF_F64, 2, s24, x, 1, SH(4), VALS(0.5, 2, 4.5, 8)));
  EXPECT(reduce_is(DF_OP_VAR, 1, 0, 0, DF_F64, 2, s24, x, 1, SH(4), VALS(0.25, 1, 2.25, 4)));
  /* all: mean 3.75, squared deviations 150 - 8 * 3.75^2 = 37.5 */
  EXPECT(reduce_is(DF_OP_VAR, 3, 0, 1, DF_F64, 2, s24, x, 0, NULL, VALS(37.5 / 7)));
  EXPECT(reduce_is(DF_OP_VAR, 3, 0, 0, DF_F64, 2, s24, x, 0, NULL, VALS(4.6875)));
  EXPECT(reduce_is(DF_OP_VAR, 3, 1, 0, DF_F64, 2, s24, x, 2, SH(1, 1), VALS(4.6875)));
}

/* ------------------------------------------------------------------ */
/* Softmax and layer norm                                              */
/* ------------------------------------------------------------------ */

static int softmax_is(df_op op, int64_t axis, int nx, const int64_t *sx, const double *vx,
                      const double *want) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, nx, sx);
  df_node_id y = OPI(g, op, x, 1, SH(axis));
  feed f = {"x", DF_F64, nx, sx, vx};
  int ok = run_is(g, y, &f, 1, DF_F64, nx, sx, want);
  if (!ok) printf("#   (%s axis %lld)\n", df_op_name(op), (long long)axis);
  df_graph_free(g);
  return ok;
}

static void test_softmax(void) {
  /* exp of the rows: [1, 2, 3] and [3, 2, 1]; columns (1, 3) (2, 2) (3, 1) */
  const double *x = VALS(0, LN2, LN3, LN3, LN2, 0);
  const int64_t *s = SH(2, 3);
  const double *rows = VALS(1.0 / 6, 1.0 / 3, 0.5, 0.5, 1.0 / 3, 1.0 / 6);
  EXPECT(softmax_is(DF_OP_SOFTMAX, -1, 2, s, x, rows));
  EXPECT(softmax_is(DF_OP_SOFTMAX, 1, 2, s, x, rows));
  EXPECT(softmax_is(DF_OP_SOFTMAX, 0, 2, s, x, VALS(0.25, 0.5, 0.75, 0.75, 0.5, 0.25)));
  EXPECT(softmax_is(DF_OP_LOG_SOFTMAX, -1, 2, s, x,
                    VALS(-1.791759469228055, -1.0986122886681098, -0.6931471805599453,
                         -0.6931471805599453, -1.0986122886681098, -1.791759469228055)));
  EXPECT(softmax_is(DF_OP_LOG_SOFTMAX, 0, 2, s, x,
                    VALS(-1.3862943611198906, -0.6931471805599453, -0.2876820724517809,
                         -0.2876820724517809, -0.6931471805599453, -1.3862943611198906)));
  /* the middle axis of [2, 2, 2]: pairs (x[i][0][k], x[i][1][k]) */
  EXPECT(softmax_is(DF_OP_SOFTMAX, 1, 3, SH(2, 2, 2), VALS(0, LN3, LN3, 0, 0, 0, LN3, LN3),
                    VALS(0.25, 0.75, 0.75, 0.25, 0.25, 0.25, 0.75, 0.75)));
  /* large values do not overflow */
  EXPECT(softmax_is(DF_OP_SOFTMAX, 0, 1, SH(2), VALS(1000, 1000), VALS(0.5, 0.5)));
  EXPECT(softmax_is(DF_OP_LOG_SOFTMAX, 0, 1, SH(2), VALS(1000, 1000), VALS(-LN2, -LN2)));
  EXPECT(softmax_is(DF_OP_SOFTMAX, -1, 2, SH(1, 2), VALS(-1000, 0), VALS(0, 1)));
}

static int layernorm_is(int nx, const int64_t *sx, const double *vx, int64_t C,
                        const double *w, const double *b, double eps, const double *want) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, nx, sx);
  df_node_id wn = INPUT(g, "w", DF_F64, 1, SH(C));
  df_node_id bn = INPUT(g, "b", DF_F64, 1, SH(C));
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nfa = 1;
  a.fa[0] = eps;
  df_node_id y = add_at(g, DF_OP_LAYERNORM, IDS(x, wn, bn), 3, &a, __LINE__);
  feed f[3] = {{"x", DF_F64, nx, sx, vx}, {"w", DF_F64, 1, SH(C), w}, {"b", DF_F64, 1, SH(C), b}};
  int ok = run_is(g, y, f, 3, DF_F64, nx, sx, want);
  df_graph_free(g);
  return ok;
}

static void test_layernorm(void) {
  /* row 0: mean 2.5, biased var 1.25; row 1: mean 0, var 1 */
  const double r = 1.0 / sqrt(1.25 + 1e-6), q = 1.0 / sqrt(1.0 + 1e-6);
  const double want[8] = {-1.5 * r, 1.0 - r, 0.25 * r - 1.0, 0.5 - 1.5 * r,
                          -q, 2.0 * q + 1.0, -0.5 * q - 1.0, 0.5 - q};
  EXPECT(layernorm_is(2, SH(2, 4), VALS(1, 2, 3, 4, -1, 1, -1, 1), 4, VALS(1, 2, 0.5, -1),
                      VALS(0, 1, -1, 0.5), 1e-6, want));
  /* rank 1, eps 0: mean 2, var 2/3 */
  EXPECT(layernorm_is(1, SH(3), VALS(1, 2, 3), 3, VALS(1, 1, 1), VALS(0, 0, 0), 0.0,
                      VALS(-1.224744871391589, 0, 1.224744871391589)));
  /* rank 3 rows are independent: a constant row gives the bias */
  EXPECT(layernorm_is(3, SH(2, 1, 2), VALS(5, 5, 0, 2), 2, VALS(3, 3), VALS(0.5, -0.5), 1e-6,
                      VALS(0.5, -0.5, -3.0 / sqrt(1.0 + 1e-6) + 0.5,
                           3.0 / sqrt(1.0 + 1e-6) - 0.5)));
}

/* ------------------------------------------------------------------ */
/* Layout                                                              */
/* ------------------------------------------------------------------ */

static df_node_id reshape_at(df_graph *g, df_op op, df_node_id x, int ndim,
                             const int64_t *shape, int line) {
  df_attrs a = attrs_src(DF_F64, ndim, shape);
  return add_at(g, op, IDS(x), 1, &a, line);
}
#define RESHAPE(g, x, ndim, shape) reshape_at((g), DF_OP_RESHAPE, (x), (ndim), (shape), __LINE__)
#define EXPAND(g, x, ndim, shape) reshape_at((g), DF_OP_EXPAND, (x), (ndim), (shape), __LINE__)

static void test_reshape(void) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(2, 3));
  feed f = {"x", DF_F64, 2, SH(2, 3), VALS(1, 2, 3, 4, 5, 6)};
  df_node_id r1 = RESHAPE(g, x, 2, SH(3, 2));
  EXPECT(run_is(g, r1, &f, 1, DF_F64, 2, SH(3, 2), VALS(1, 2, 3, 4, 5, 6)));
  df_node_id r2 = RESHAPE(g, x, 4, SH(1, 2, 1, 3));
  EXPECT(run_is(g, r2, &f, 1, DF_F64, 4, SH(1, 2, 1, 3), VALS(1, 2, 3, 4, 5, 6)));
  /* after a permute the elements are in the permuted order */
  df_node_id t = OPI(g, DF_OP_PERMUTE, x, 2, SH(1, 0));
  df_node_id r3 = RESHAPE(g, t, 1, SH(6));
  EXPECT(run_is(g, r3, &f, 1, DF_F64, 1, SH(6), VALS(1, 4, 2, 5, 3, 6)));
  /* the dtype is the input's */
  df_node_id n = INPUT(g, "n", DF_I64, 1, SH(1));
  df_node_id r4 = RESHAPE(g, n, 0, NULL);
  CHECK(df_graph_node(g, r4)->dtype == DF_I64);
  feed fn = {"n", DF_I64, 1, SH(1), VALS(-7)};
  EXPECT(run_is(g, r4, &fn, 1, DF_I64, 0, NULL, VALS(-7)));
  df_graph_free(g);
}

static void test_expand(void) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(1, 3));
  feed f = {"x", DF_F64, 2, SH(1, 3), VALS(1, 2, 3)};
  df_node_id e = EXPAND(g, x, 2, SH(2, 3));
  EXPECT(run_is(g, e, &f, 1, DF_F64, 2, SH(2, 3), VALS(1, 2, 3, 1, 2, 3)));
  df_node_id e3 = EXPAND(g, x, 3, SH(2, 2, 3));
  EXPECT(run_is(g, e3, &f, 1, DF_F64, 3, SH(2, 2, 3), VALS(1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3)));
  df_graph_free(g);

  /* [3, 1] -> [2, 3, 4]: shapes align at the right, rank may grow */
  g = df_graph_new();
  x = INPUT(g, "x", DF_F64, 2, SH(3, 1));
  feed f2 = {"x", DF_F64, 2, SH(3, 1), VALS(1, 2, 3)};
  e = EXPAND(g, x, 3, SH(2, 3, 4));
  EXPECT(run_is(g, e, &f2, 1, DF_F64, 3, SH(2, 3, 4),
                VALS(1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)));
  df_node_id same = EXPAND(g, x, 2, SH(3, 1));
  EXPECT(run_is(g, same, &f2, 1, DF_F64, 2, SH(3, 1), VALS(1, 2, 3)));
  df_graph_free(g);

  /* [3] -> [2, 3] and [] -> [2, 2] */
  g = df_graph_new();
  x = INPUT(g, "x", DF_F64, 1, SH(3));
  df_node_id s = INPUT(g, "s", DF_F64, 0, NULL);
  feed f3[2] = {{"x", DF_F64, 1, SH(3), VALS(1, 2, 3)}, {"s", DF_F64, 0, NULL, VALS(7)}};
  e = EXPAND(g, x, 2, SH(2, 3));
  EXPECT(run_is(g, e, f3, 2, DF_F64, 2, SH(2, 3), VALS(1, 2, 3, 1, 2, 3)));
  df_node_id es = EXPAND(g, s, 2, SH(2, 2));
  EXPECT(run_is(g, es, f3, 2, DF_F64, 2, SH(2, 2), VALS(7, 7, 7, 7)));

  /* rank rules: no fewer dims, non-1 dims must match at the right */
  df_err err;
  df_node_id x23 = INPUT(g, "x23", DF_F64, 2, SH(2, 3));
  df_attrs a = attrs_src(DF_F64, 1, SH(3));
  CHECK(add_fails(g, DF_OP_EXPAND, IDS(x23), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: expand:");
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[3]");
  a = attrs_src(DF_F64, 2, SH(2, 4));
  CHECK(add_fails(g, DF_OP_EXPAND, IDS(x23), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "[2, 4]");
  a = attrs_src(DF_F64, 2, SH(3, 2)); /* [3] aligns with the 2, not the 3 */
  CHECK(add_fails(g, DF_OP_EXPAND, IDS(x), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "[3, 2]");
  df_graph_free(g);
}

static void test_permute(void) {
  double v[24];
  for (int i = 0; i < 24; i++) v[i] = i; /* x[i][j][k] = 12 i + 4 j + k */
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 3, SH(2, 3, 4));
  feed f = {"x", DF_F64, 3, SH(2, 3, 4), v};
  /* out[a][b][c] = x[b][c][a] */
  df_node_id p = OPI(g, DF_OP_PERMUTE, x, 3, SH(2, 0, 1));
  EXPECT(run_is(g, p, &f, 1, DF_F64, 3, SH(4, 2, 3),
                VALS(0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7,
                     11, 15, 19, 23)));
  /* out[a][b][c] = x[b][a][c] */
  p = OPI(g, DF_OP_PERMUTE, x, 3, SH(1, 0, 2));
  EXPECT(run_is(g, p, &f, 1, DF_F64, 3, SH(3, 2, 4),
                VALS(0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20,
                     21, 22, 23)));
  /* out[a][b][c] = x[a][c][b] */
  p = OPI(g, DF_OP_PERMUTE, x, 3, SH(0, 2, 1));
  EXPECT(run_is(g, p, &f, 1, DF_F64, 3, SH(2, 4, 3),
                VALS(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, 12, 16, 20, 13, 17, 21, 14, 18, 22,
                     15, 19, 23)));
  p = OPI(g, DF_OP_PERMUTE, x, 3, SH(0, 1, 2));
  EXPECT(run_is(g, p, &f, 1, DF_F64, 3, SH(2, 3, 4), v));
  df_graph_free(g);
}

static void test_slice(void) {
  double v[20];
  for (int i = 0; i < 20; i++) v[i] = i; /* x[i][j][k] = 10 i + 2 j + k */
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 3, SH(2, 5, 2));
  feed f = {"x", DF_F64, 3, SH(2, 5, 2), v};
  /* axis 1, rows 1 and 3 */
  df_node_id s = OPI(g, DF_OP_SLICE, x, 4, SH(1, 1, 5, 2));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 2, 2), VALS(2, 3, 6, 7, 12, 13, 16, 17)));
  /* axis -2, rows 0 and 3 */
  s = OPI(g, DF_OP_SLICE, x, 4, SH(-2, 0, 5, 3));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 2, 2), VALS(0, 1, 6, 7, 10, 11, 16, 17)));
  /* axis 1, rows 1..3 */
  s = OPI(g, DF_OP_SLICE, x, 4, SH(1, 1, 4, 1));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 3, 2), VALS(2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17)));
  /* a step past the end keeps just the start */
  s = OPI(g, DF_OP_SLICE, x, 4, SH(1, 4, 5, 10));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 1, 2), VALS(8, 9, 18, 19)));
  /* last and first axes */
  s = OPI(g, DF_OP_SLICE, x, 4, SH(2, 1, 2, 1));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 5, 1), VALS(1, 3, 5, 7, 9, 11, 13, 15, 17, 19)));
  s = OPI(g, DF_OP_SLICE, x, 4, SH(0, 1, 2, 1));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(1, 5, 2), v + 10));
  /* an empty range */
  s = OPI(g, DF_OP_SLICE, x, 4, SH(1, 2, 2, 1));
  EXPECT(run_is(g, s, &f, 1, DF_F64, 3, SH(2, 0, 2), NULL));
  df_graph_free(g);
}

static void test_concat(void) {
  df_graph *g = df_graph_new();
  df_node_id a = INPUT(g, "a", DF_F64, 2, SH(2, 1));
  df_node_id b = INPUT(g, "b", DF_F64, 2, SH(2, 2));
  df_node_id c = INPUT(g, "c", DF_F64, 2, SH(2, 3));
  feed f[3] = {{"a", DF_F64, 2, SH(2, 1), VALS(1, 2)},
               {"b", DF_F64, 2, SH(2, 2), VALS(3, 4, 5, 6)},
               {"c", DF_F64, 2, SH(2, 3), VALS(7, 8, 9, 10, 11, 12)}};
  df_attrs at = attrs_ia(1, SH(1));
  df_node_id k = ADD(g, DF_OP_CONCAT, IDS(a, b, c), 3, &at);
  const double *want = VALS(1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12);
  EXPECT(run_is(g, k, f, 3, DF_F64, 2, SH(2, 6), want));
  at.ia[0] = -1;
  k = ADD(g, DF_OP_CONCAT, IDS(a, b, c), 3, &at);
  EXPECT(run_is(g, k, f, 3, DF_F64, 2, SH(2, 6), want));
  /* one input is a copy */
  k = ADD(g, DF_OP_CONCAT, IDS(b), 1, &at);
  EXPECT(run_is(g, k, f, 3, DF_F64, 2, SH(2, 2), VALS(3, 4, 5, 6)));
  df_graph_free(g);

  /* axis 0 of [1, 2] and [2, 2], and the middle axis of rank 3 */
  g = df_graph_new();
  a = INPUT(g, "a", DF_F64, 2, SH(1, 2));
  b = INPUT(g, "b", DF_F64, 2, SH(2, 2));
  feed f2[2] = {{"a", DF_F64, 2, SH(1, 2), VALS(1, 2)},
                {"b", DF_F64, 2, SH(2, 2), VALS(3, 4, 5, 6)}};
  at.ia[0] = 0;
  k = ADD(g, DF_OP_CONCAT, IDS(a, b), 2, &at);
  EXPECT(run_is(g, k, f2, 2, DF_F64, 2, SH(3, 2), VALS(1, 2, 3, 4, 5, 6)));
  df_node_id a3 = INPUT(g, "a3", DF_F64, 3, SH(2, 1, 2));
  df_node_id b3 = INPUT(g, "b3", DF_F64, 3, SH(2, 2, 2));
  feed f3[2] = {{"a3", DF_F64, 3, SH(2, 1, 2), VALS(1, 2, 3, 4)},
                {"b3", DF_F64, 3, SH(2, 2, 2), VALS(10, 20, 30, 40, 50, 60, 70, 80)}};
  at.ia[0] = 1;
  k = ADD(g, DF_OP_CONCAT, IDS(b3, a3), 2, &at);
  EXPECT(run_is(g, k, f3, 2, DF_F64, 3, SH(2, 3, 2),
                VALS(10, 20, 30, 40, 1, 2, 50, 60, 70, 80, 3, 4)));
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Indexing                                                            */
/* ------------------------------------------------------------------ */

static void test_gather(void) {
  double v[24];
  for (int i = 0; i < 24; i++) v[i] = i; /* x[b][n][s] = 12 b + 3 n + s */
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 3, SH(2, 4, 3));
  df_node_id ix = INPUT(g, "idx", DF_I64, 2, SH(2, 2));
  df_attrs at = attrs_ia(1, SH(1));
  df_node_id y = ADD(g, DF_OP_GATHER, IDS(x, ix), 2, &at);
  feed f[2] = {{"x", DF_F64, 3, SH(2, 4, 3), v}, {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 1, 1)}};
  EXPECT(run_is(g, y, f, 2, DF_F64, 3, SH(2, 2, 3),
                VALS(9, 10, 11, 0, 1, 2, 15, 16, 17, 15, 16, 17)));
  /* x [1, 4, 3] broadcasts over idx's leading dim */
  df_node_id x1 = INPUT(g, "x1", DF_F64, 3, SH(1, 4, 3));
  y = ADD(g, DF_OP_GATHER, IDS(x1, ix), 2, &at);
  feed f1[2] = {{"x1", DF_F64, 3, SH(1, 4, 3), v},
                {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 1, 2)}};
  EXPECT(run_is(g, y, f1, 2, DF_F64, 3, SH(2, 2, 3), VALS(9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7, 8)));
  df_graph_free(g);

  /* axis 0 with i32 indices; axis -1 of [2, 3] */
  g = df_graph_new();
  x = INPUT(g, "x", DF_F64, 2, SH(4, 2));
  ix = INPUT(g, "idx", DF_I32, 1, SH(3));
  at.ia[0] = 0;
  y = ADD(g, DF_OP_GATHER, IDS(x, ix), 2, &at);
  feed f2[2] = {{"x", DF_F64, 2, SH(4, 2), v}, {"idx", DF_I32, 1, SH(3), VALS(2, 0, 2)}};
  EXPECT(run_is(g, y, f2, 2, DF_F64, 2, SH(3, 2), VALS(4, 5, 0, 1, 4, 5)));
  df_node_id x23 = INPUT(g, "x23", DF_I64, 2, SH(2, 3));
  df_node_id ix2 = INPUT(g, "idx2", DF_I64, 2, SH(2, 2));
  at.ia[0] = -1;
  y = ADD(g, DF_OP_GATHER, IDS(x23, ix2), 2, &at);
  CHECK(df_graph_node(g, y)->dtype == DF_I64);
  feed f3[2] = {{"x23", DF_I64, 2, SH(2, 3), VALS(1, 2, 3, 4, 5, 6)},
                {"idx2", DF_I64, 2, SH(2, 2), VALS(2, 0, 1, 1)}};
  EXPECT(run_is(g, y, f3, 2, DF_I64, 2, SH(2, 2), VALS(3, 1, 5, 5)));
  df_graph_free(g);
}

/* mask_index attributes: value, count, then t, h, w, rh, rw (0 = none). */
static df_node_id mask_index_at(df_graph *g, df_node_id m, int64_t value, int64_t count,
                                const int64_t *region, int line) {
  df_attrs a = attrs_ia(7, SH(value, count, 0, 0, 0, 0, 0));
  if (region)
    for (int i = 0; i < 5; i++) a.ia[2 + i] = region[i];
  return add_at(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, line);
}
#define MASK_INDEX(g, m, value, count, region) \
  mask_index_at((g), (m), (value), (count), (region), __LINE__)

static void test_mask_index(void) {
  df_graph *g = df_graph_new();
  df_node_id m = INPUT(g, "mask", DF_BOOL, 2, SH(2, 4));
  feed f = {"mask", DF_BOOL, 2, SH(2, 4), VALS(1, 0, 1, 0, 0, 1, 1, 0)};
  df_node_id i1 = MASK_INDEX(g, m, 1, 2, NULL);
  CHECK(df_graph_node(g, i1)->dtype == DF_I64);
  EXPECT(run_is(g, i1, &f, 1, DF_I64, 2, SH(2, 2), VALS(0, 2, 1, 2)));
  df_node_id i0 = MASK_INDEX(g, m, 0, 2, NULL);
  EXPECT(run_is(g, i0, &f, 1, DF_I64, 2, SH(2, 2), VALS(1, 3, 0, 3)));
  df_graph_free(g);

  /* region t=2, h=2, w=2, windows rh=2 x rw=1: 4 windows, one selected
  ** token in each column of each frame.  Token (f, y, x) is 4 f + 2 y + x. */
  const int64_t *region = SH(2, 2, 2, 2, 1);
  g = df_graph_new();
  m = INPUT(g, "mask", DF_BOOL, 2, SH(2, 8));
  df_node_id r1 = MASK_INDEX(g, m, 1, 4, region);
  df_node_id r0 = MASK_INDEX(g, m, 0, 4, region);
  df_node_id plain = MASK_INDEX(g, m, 1, 4, NULL);
  feed good = {"mask", DF_BOOL, 2, SH(2, 8),
               VALS(1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1)};
  EXPECT(run_is(g, r1, &good, 1, DF_I64, 2, SH(2, 4), VALS(0, 3, 5, 6, 1, 2, 4, 7)));
  EXPECT(run_is(g, r0, &good, 1, DF_I64, 2, SH(2, 4), VALS(1, 2, 4, 7, 0, 3, 5, 6)));
  /* row 1 selects both tokens of column 0 in frame 0: right count, but
  ** window (0, 0) has 2 and window (0, 1) none */
  feed bad = {"mask", DF_BOOL, 2, SH(2, 8),
              VALS(1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0)};
  EXPECT(run_is(g, plain, &bad, 1, DF_I64, 2, SH(2, 4), VALS(0, 3, 5, 6, 0, 2, 5, 6)));
  df_err err;
  CHECK(run_fails(g, r1, &bad, 1, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: mask_index:");
  CHECK_CONTAINS(err.msg, "row 1");
  CHECK_CONTAINS(err.msg, "frame 0");
  CHECK_CONTAINS(err.msg, "window (0, 0) has 2");
  CHECK(err.code == DF_ERUNTIME);

  /* the region must fit the tokens and the count at build time */
  df_attrs a = attrs_ia(7, SH(1, 4, 2, 2, 3, 1, 1)); /* 2*2*3 = 12 != 8 tokens */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: mask_index:");
  a = attrs_ia(7, SH(1, 3, 2, 2, 2, 2, 1)); /* 3 not a multiple of 4 windows */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  a = attrs_ia(7, SH(1, 4, 2, 2, 2, 3, 1)); /* window taller than the frame */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  a = attrs_ia(7, SH(1, 4, 2, 2, 2, 0, 1)); /* empty window */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  a = attrs_ia(7, SH(1, 9, 0, 0, 0, 0, 0)); /* more than the 8 tokens */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "count 9");
  df_graph_free(g);
}

/*
** The region check's own sizes must be sane: a degenerate region (h = 0 on
** an empty mask) must be refused or accepted, never crash (it is tried in
** a child process), and negative h, w are not a region.
*/
static void test_mask_index_region_degenerate(void) {
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    df_graph *g = df_graph_new();
    df_err err;
    df_err_clear(&err);
    df_attrs a = attrs_src(DF_BOOL, 2, SH(2, 0));
    a.str = "mask";
    df_node_id m = df_graph_add(g, DF_OP_INPUT, NULL, 0, &a, SRC_FILE, SRC_LINE, &err);
    a = attrs_ia(7, SH(1, 0, 1, 0, 4, 1, 1)); /* t=1, h=0, w=4: 0 tokens */
    df_graph_add(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, SRC_FILE, SRC_LINE, &err);
    df_graph_free(g);
    _exit(0);
  }
  if (pid > 0) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status))
      printf("#   mask_index shape rule killed by signal %d on region h = 0\n", WTERMSIG(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

  df_graph *g = df_graph_new();
  df_err err;
  df_node_id m = INPUT(g, "mask", DF_BOOL, 2, SH(1, 4));
  df_attrs a = attrs_ia(7, SH(1, 4, 1, -2, -2, 1, 1)); /* 1 * -2 * -2 = 4 tokens */
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m), 1, &a, &err));
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Awkward shapes                                                      */
/* ------------------------------------------------------------------ */

static void test_size_one_dims(void) {
  EXPECT(binary_is(DF_OP_ADD, 3, SH(1, 1, 3), VALS(1, 2, 3), 3, SH(3, 1, 1), VALS(10, 20, 30), 3,
                   SH(3, 1, 3), VALS(11, 12, 13, 21, 22, 23, 31, 32, 33)));
  EXPECT(binary_is(DF_OP_MUL, 2, SH(1, 1), VALS(3), 2, SH(1, 1), VALS(4), 2, SH(1, 1),
                   VALS(12)));
  EXPECT(reduce_is(DF_OP_SUM, 1, 0, 0, DF_F64, 2, SH(1, 3), VALS(1, 2, 3), 1, SH(3),
                   VALS(1, 2, 3)));
  EXPECT(reduce_is(DF_OP_VAR, 1, 0, 0, DF_F64, 2, SH(1, 3), VALS(1, 2, 3), 1, SH(3),
                   VALS(0, 0, 0)));
  /* unbiased variance of one element divides by 0: NaN */
  EXPECT(reduce_is(DF_OP_VAR, 1, 0, 1, DF_F64, 2, SH(1, 3), VALS(1, 2, 3), 1, SH(3),
                   VALS(NAN, NAN, NAN)));
  EXPECT(matmul_is(0, 0, 2, SH(1, 1), VALS(3), 2, SH(1, 1), VALS(4), 2, SH(1, 1), VALS(12)));
  EXPECT(matmul_is(0, 0, 2, SH(1, 3), VALS(1, 2, 3), 2, SH(3, 1), VALS(4, 5, 6), 2, SH(1, 1),
                   VALS(32)));
  EXPECT(softmax_is(DF_OP_SOFTMAX, 1, 2, SH(2, 1), VALS(5, -7), VALS(1, 1)));
  EXPECT(softmax_is(DF_OP_LOG_SOFTMAX, 1, 2, SH(2, 1), VALS(5, -7), VALS(0, 0)));
  /* a layer norm over one channel gives the bias */
  EXPECT(layernorm_is(2, SH(2, 1), VALS(3, -4), 1, VALS(2), VALS(0.25), 1e-6,
                      VALS(0.25, 0.25)));
}

static void test_zero_size(void) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(2, 0));
  df_node_id y = INPUT(g, "y", DF_F64, 1, SH(0));
  feed f[2] = {{"x", DF_F64, 2, SH(2, 0), NULL}, {"y", DF_F64, 1, SH(0), NULL}};
  df_node_id s = OP2(g, DF_OP_ADD, x, y);
  EXPECT(run_is(g, s, f, 2, DF_F64, 2, SH(2, 0), NULL));
  df_node_id e = OP1(g, DF_OP_EXP, s);
  EXPECT(run_is(g, e, f, 2, DF_F64, 2, SH(2, 0), NULL));
  /* a sum over an empty axis is 0 */
  df_node_id r = OPI(g, DF_OP_SUM, x, 2, SH(2, 0));
  EXPECT(run_is(g, r, f, 2, DF_F64, 1, SH(2), VALS(0, 0)));
  r = OPI(g, DF_OP_SUM, x, 2, SH(2, 1));
  EXPECT(run_is(g, r, f, 2, DF_F64, 2, SH(2, 1), VALS(0, 0)));
  r = OPI(g, DF_OP_SUM, x, 2, SH(3, 0));
  EXPECT(run_is(g, r, f, 2, DF_F64, 0, NULL, VALS(0)));
  /* over the non-empty axis: an empty result */
  r = OPI(g, DF_OP_SUM, x, 2, SH(1, 0));
  EXPECT(run_is(g, r, f, 2, DF_F64, 1, SH(0), NULL));
  /* concat with an empty piece */
  df_node_id b = INPUT(g, "b", DF_F64, 2, SH(2, 2));
  df_attrs at = attrs_ia(1, SH(1));
  df_node_id k = ADD(g, DF_OP_CONCAT, IDS(x, b, x), 3, &at);
  feed f2[2] = {{"x", DF_F64, 2, SH(2, 0), NULL}, {"b", DF_F64, 2, SH(2, 2), VALS(1, 2, 3, 4)}};
  EXPECT(run_is(g, k, f2, 2, DF_F64, 2, SH(2, 2), VALS(1, 2, 3, 4)));
  df_graph_free(g);

  /* matmul: K = 0 gives zeros; M = 0 gives an empty result */
  EXPECT(matmul_is(0, 0, 2, SH(2, 0), NULL, 2, SH(0, 3), NULL, 2, SH(2, 3),
                   VALS(0, 0, 0, 0, 0, 0)));
  EXPECT(matmul_is(0, 0, 2, SH(0, 3), NULL, 2, SH(3, 2), VALS(1, 2, 3, 4, 5, 6), 2, SH(0, 2),
                   NULL));
  EXPECT(matmul_is(0, 0, 3, SH(0, 2, 3), NULL, 2, SH(3, 2), VALS(1, 2, 3, 4, 5, 6), 3,
                   SH(0, 2, 2), NULL));
}

static void test_scalars(void) {
  EXPECT(binary_is(DF_OP_ADD, 0, NULL, VALS(3), 0, NULL, VALS(4), 0, NULL, VALS(7)));
  EXPECT(binary_is(DF_OP_POW, 0, NULL, VALS(9), 0, NULL, VALS(0.5), 0, NULL, VALS(3)));
  EXPECT(reduce_is(DF_OP_SUM, 0, 0, 0, DF_F64, 0, NULL, VALS(5), 0, NULL, VALS(5)));
  EXPECT(reduce_is(DF_OP_AMAX, 0, 1, 0, DF_F64, 0, NULL, VALS(-5), 0, NULL, VALS(-5)));
  /* no axes reduced: an identity */
  EXPECT(reduce_is(DF_OP_MEAN, 0, 0, 0, DF_F64, 1, SH(3), VALS(1, 2, 4), 1, SH(3),
                   VALS(1, 2, 4)));

  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 0, NULL);
  feed f = {"x", DF_F64, 0, NULL, VALS(-2.5)};
  df_node_id y = OP1(g, DF_OP_ABS, x);
  CHECK(df_graph_node(g, y)->ndim == 0);
  EXPECT(run_is(g, y, &f, 1, DF_F64, 0, NULL, VALS(2.5)));
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.dtype = DF_I64;
  df_node_id c = ADD(g, DF_OP_CAST, IDS(x), 1, &a);
  EXPECT(run_is(g, c, &f, 1, DF_I64, 0, NULL, VALS(-2)));
  df_node_id r = RESHAPE(g, x, 2, SH(1, 1));
  EXPECT(run_is(g, r, &f, 1, DF_F64, 2, SH(1, 1), VALS(-2.5)));
  df_node_id back = RESHAPE(g, r, 0, NULL);
  EXPECT(run_is(g, back, &f, 1, DF_F64, 0, NULL, VALS(-2.5)));
  df_node_id lt = OP2(g, DF_OP_LT, x, y);
  df_node_id w = add_at(g, DF_OP_WHERE, IDS(lt, x, y), 3, NULL, __LINE__);
  EXPECT(run_is(g, w, &f, 1, DF_F64, 0, NULL, VALS(-2.5)));
  /* an output that is also an input of another output */
  df_node_id outs[2] = {y, x};
  df_tensor *res[2];
  df_err err;
  CHECK(run_graph(g, outs, 2, &f, 1, res, &err) == 0);
  EXPECT(tensor_is(res[0], DF_F64, 0, NULL, VALS(2.5)));
  EXPECT(tensor_is(res[1], DF_F64, 0, NULL, VALS(-2.5)));
  df_tensor_unref(res[0]);
  df_tensor_unref(res[1]);
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Shape-rule errors                                                   */
/* ------------------------------------------------------------------ */

static void test_errors_elementwise(void) {
  df_graph *g = df_graph_new();
  df_err err;
  df_node_id a23 = INPUT(g, "a", DF_F64, 2, SH(2, 3));
  df_node_id a24 = INPUT(g, "b", DF_F64, 2, SH(2, 4));
  df_node_id f32 = INPUT(g, "c", DF_F32, 1, SH(3));
  df_node_id i64 = INPUT(g, "d", DF_I64, 1, SH(3));
  df_node_id bl = INPUT(g, "e", DF_BOOL, 2, SH(2, 3));

  CHECK(add_fails(g, DF_OP_ADD, IDS(a23, a24), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: add:");
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[2, 4]");
  CHECK(err.code == DF_ESHAPE);

  CHECK(add_fails(g, DF_OP_ADD, IDS(f32, i64), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: add:");
  CHECK_CONTAINS(err.msg, "f32");
  CHECK_CONTAINS(err.msg, "i64");

  CHECK(add_fails(g, DF_OP_LT, IDS(a24, a23), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: lt:");
  CHECK_CONTAINS(err.msg, "[2, 4]");

  /* unary math needs a float */
  CHECK(add_fails(g, DF_OP_EXP, IDS(i64), 1, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: exp:");
  CHECK_CONTAINS(err.msg, "i64");

  /* where: a bool condition, one dtype, broadcastable */
  CHECK(add_fails(g, DF_OP_WHERE, IDS(a23, a23, a23), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: where:");
  CHECK_CONTAINS(err.msg, "bool");
  CHECK(add_fails(g, DF_OP_WHERE, IDS(bl, a23, f32), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "f32");
  CHECK(add_fails(g, DF_OP_WHERE, IDS(bl, a24, a24), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[2, 4]");

  /* cast to a dtype that does not exist */
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.dtype = DF_DTYPE_COUNT;
  CHECK(add_fails(g, DF_OP_CAST, IDS(a23), 1, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: cast:");

  /* arity and input ids */
  CHECK(add_fails(g, DF_OP_ADD, IDS(a23), 1, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: add:");
  CHECK_CONTAINS(err.msg, "got 1");
  CHECK(add_fails(g, DF_OP_WHERE, IDS(bl, a23, a23, a23), 4, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: where:");
  CHECK_CONTAINS(err.msg, "got 4");
  CHECK(add_fails(g, DF_OP_CONCAT, NULL, 0, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: concat:");
  CHECK(add_fails(g, DF_OP_NEG, IDS(99), 1, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: neg:");
  CHECK_CONTAINS(err.msg, "not a node");
  CHECK(add_fails(g, DF_OP_ADD, IDS(a23, -1), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "input 2");
  CHECK(add_fails(g, DF_OP_ADD, IDS(a23, df_graph_count(g)), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "not a node");
  CHECK(add_fails(g, DF_OP_COUNT, IDS(a23), 1, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42:");
  df_graph_free(g);
}

static void test_errors_sources(void) {
  df_graph *g = df_graph_new();
  df_err err;
  df_attrs a = attrs_src(DF_F64, 2, SH(2, 3));
  CHECK(add_fails(g, DF_OP_INPUT, NULL, 0, &a, &err)); /* no name */
  CHECK_CONTAINS(err.msg, "model.lua:42: input:");
  a.str = "";
  CHECK(add_fails(g, DF_OP_PARAM, NULL, 0, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: param:");
  a = attrs_src(DF_F64, 2, SH(2, -3));
  a.str = "x";
  CHECK(add_fails(g, DF_OP_INPUT, NULL, 0, &a, &err));
  CHECK_CONTAINS(err.msg, "[2, -3]");
  a = attrs_src(DF_F64, 8, SH(1, 1, 1, 1, 1, 1, 1, 1));
  a.ndim = 9; /* one more than DF_MAX_DIMS */
  a.str = "x";
  CHECK(add_fails(g, DF_OP_INPUT, NULL, 0, &a, &err));
  a = attrs_src(DF_I64, 2, SH(2, 3));
  a.ia[0] = 2;
  CHECK(add_fails(g, DF_OP_IOTA, NULL, 0, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: iota:");
  CHECK_CONTAINS(err.msg, "axis 2");
  a = attrs_src(DF_F32, 3, SH(1, 3, 4));
  CHECK(add_fails(g, DF_OP_SINUSOID, NULL, 0, &a, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: sinusoid:");
  a = attrs_src(DF_I64, 2, SH(3, 4));
  CHECK(add_fails(g, DF_OP_SINUSOID, NULL, 0, &a, &err));
  /* df_graph_find sees only what was added */
  a = attrs_src(DF_F64, 1, SH(2));
  a.str = "w";
  df_node_id w = ADD(g, DF_OP_PARAM, NULL, 0, &a);
  CHECK(df_graph_find(g, DF_OP_PARAM, "w") == w);
  CHECK(df_graph_find(g, DF_OP_INPUT, "w") == -1);
  CHECK(df_graph_find(g, DF_OP_INPUT, "x") == -1);
  CHECK(df_graph_count(g) == 1);
  df_graph_free(g);
}

static void test_errors_products(void) {
  df_graph *g = df_graph_new();
  df_err err;
  df_node_id a = INPUT(g, "a", DF_F64, 2, SH(2, 3));
  df_node_id b = INPUT(g, "b", DF_F64, 2, SH(4, 5));
  df_node_id v = INPUT(g, "v", DF_F64, 1, SH(3));
  df_node_id ai = INPUT(g, "ai", DF_I64, 2, SH(2, 3));
  df_node_id bi = INPUT(g, "bi", DF_I64, 2, SH(3, 2));
  df_node_id a3 = INPUT(g, "a3", DF_F64, 3, SH(2, 2, 3));
  df_node_id b3 = INPUT(g, "b3", DF_F64, 3, SH(3, 3, 2));
  df_node_id f32 = INPUT(g, "f", DF_F32, 2, SH(3, 2));

  CHECK(add_fails(g, DF_OP_MATMUL, IDS(a, b), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: matmul:");
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[4, 5]");
  CHECK(err.code == DF_ESHAPE);
  /* transposing b makes [4, 5]^T's K = 5: still wrong */
  df_attrs t = attrs_ia(2, SH(0, 1));
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(a, b), 2, &t, &err));
  CHECK_CONTAINS(err.msg, "[4, 5]");
  /* transposing a when it fits without is wrong too */
  df_node_id b32 = INPUT(g, "b32", DF_F64, 2, SH(3, 2));
  t = attrs_ia(2, SH(1, 0));
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(a, b32), 2, &t, &err));
  CHECK_CONTAINS(err.msg, "[3, 2]");
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(v, b32), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "2-D");
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(ai, bi), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "i64");
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(a, f32), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "f32");
  CHECK(add_fails(g, DF_OP_MATMUL, IDS(a3, b3), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "[2, 2, 3]");
  CHECK_CONTAINS(err.msg, "[3, 3, 2]");
  CHECK_CONTAINS(err.msg, "batch");

  /* layer norm: weight and bias must be [C] of x's dtype */
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(2, 4));
  df_node_id w3 = INPUT(g, "w3", DF_F64, 1, SH(3));
  df_node_id w4 = INPUT(g, "w4", DF_F64, 1, SH(4));
  df_node_id w14 = INPUT(g, "w14", DF_F64, 2, SH(1, 4));
  df_node_id w4f = INPUT(g, "w4f", DF_F32, 1, SH(4));
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(x, w3, w4), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: layernorm:");
  CHECK_CONTAINS(err.msg, "[2, 4]");
  CHECK_CONTAINS(err.msg, "[3]");
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(x, w4, w3), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "[3]");
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(x, w14, w4), 3, NULL, &err));
  CHECK_CONTAINS(err.msg, "[1, 4]");
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(x, w4f, w4), 3, NULL, &err));
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(ai, w3, w3), 3, NULL, &err));
  CHECK(add_fails(g, DF_OP_LAYERNORM, IDS(x, w4), 2, NULL, &err));
  CHECK_CONTAINS(err.msg, "got 2");

  /* reductions and softmax */
  df_attrs r = attrs_ia(3, SH(4, 0, 0)); /* axis 2 of a rank-2 tensor */
  CHECK(add_fails(g, DF_OP_SUM, IDS(a), 1, &r, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: sum:");
  CHECK_CONTAINS(err.msg, "rank 2");
  r = attrs_ia(3, SH(-1, 0, 0));
  CHECK(add_fails(g, DF_OP_AMAX, IDS(a), 1, &r, &err));
  r = attrs_ia(3, SH(1, 0, 0));
  CHECK(add_fails(g, DF_OP_MEAN, IDS(ai), 1, &r, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: mean:");
  CHECK_CONTAINS(err.msg, "i64");
  CHECK(add_fails(g, DF_OP_VAR, IDS(ai), 1, &r, &err));
  df_attrs s = attrs_ia(1, SH(2));
  CHECK(add_fails(g, DF_OP_SOFTMAX, IDS(a), 1, &s, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: softmax:");
  CHECK_CONTAINS(err.msg, "axis 2");
  s = attrs_ia(1, SH(-3));
  CHECK(add_fails(g, DF_OP_LOG_SOFTMAX, IDS(a), 1, &s, &err));
  s = attrs_ia(1, SH(0));
  CHECK(add_fails(g, DF_OP_SOFTMAX, IDS(ai), 1, &s, &err));
  df_graph_free(g);
}

static void test_errors_layout(void) {
  df_graph *g = df_graph_new();
  df_err err;
  df_node_id a = INPUT(g, "a", DF_F64, 2, SH(2, 3));
  df_node_id a3 = INPUT(g, "a3", DF_F64, 3, SH(2, 3, 1));
  df_node_id b = INPUT(g, "b", DF_F64, 2, SH(3, 3));
  df_node_id ai = INPUT(g, "ai", DF_I64, 2, SH(2, 3));

  df_attrs r = attrs_src(DF_F64, 1, SH(4));
  CHECK(add_fails(g, DF_OP_RESHAPE, IDS(a), 1, &r, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: reshape:");
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[4]");
  r = attrs_src(DF_F64, 2, SH(-2, -3)); /* same product, negative dims */
  CHECK(add_fails(g, DF_OP_RESHAPE, IDS(a), 1, &r, &err));
  r = attrs_src(DF_F64, 2, SH(-1, 6)); /* -1 is not resolved here */
  CHECK(add_fails(g, DF_OP_RESHAPE, IDS(a), 1, &r, &err));

  df_attrs p = attrs_ia(3, SH(0, 0, 1));
  CHECK(add_fails(g, DF_OP_PERMUTE, IDS(a3), 1, &p, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: permute:");
  CHECK_CONTAINS(err.msg, "not a permutation");
  p = attrs_ia(3, SH(0, 1, 3));
  CHECK(add_fails(g, DF_OP_PERMUTE, IDS(a3), 1, &p, &err));
  p = attrs_ia(3, SH(0, -1, 1));
  CHECK(add_fails(g, DF_OP_PERMUTE, IDS(a3), 1, &p, &err));
  p = attrs_ia(2, SH(1, 0)); /* two axes for a rank-3 tensor */
  CHECK(add_fails(g, DF_OP_PERMUTE, IDS(a3), 1, &p, &err));
  CHECK_CONTAINS(err.msg, "rank-3");

  df_attrs s = attrs_ia(4, SH(1, 0, 4, 1)); /* end 4 > 3 */
  CHECK(add_fails(g, DF_OP_SLICE, IDS(a), 1, &s, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: slice:");
  CHECK_CONTAINS(err.msg, "0:4:1");
  CHECK_CONTAINS(err.msg, "size 3");
  s = attrs_ia(4, SH(1, 2, 1, 1)); /* start after end */
  CHECK(add_fails(g, DF_OP_SLICE, IDS(a), 1, &s, &err));
  s = attrs_ia(4, SH(1, -1, 2, 1)); /* negative start */
  CHECK(add_fails(g, DF_OP_SLICE, IDS(a), 1, &s, &err));
  s = attrs_ia(4, SH(1, 0, 2, 0)); /* step 0 */
  CHECK(add_fails(g, DF_OP_SLICE, IDS(a), 1, &s, &err));
  s = attrs_ia(4, SH(2, 0, 1, 1)); /* axis 2 of rank 2 */
  CHECK(add_fails(g, DF_OP_SLICE, IDS(a), 1, &s, &err));
  CHECK_CONTAINS(err.msg, "axis 2");

  df_attrs c = attrs_ia(1, SH(1));
  CHECK(add_fails(g, DF_OP_CONCAT, IDS(a, a3), 2, &c, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: concat:");
  CHECK_CONTAINS(err.msg, "[2, 3]");
  CHECK_CONTAINS(err.msg, "[2, 3, 1]");
  c = attrs_ia(1, SH(1)); /* [2, 3] and [3, 3] differ off the axis */
  CHECK(add_fails(g, DF_OP_CONCAT, IDS(a, b), 2, &c, &err));
  CHECK_CONTAINS(err.msg, "[3, 3]");
  c = attrs_ia(1, SH(0));
  CHECK(add_fails(g, DF_OP_CONCAT, IDS(a, ai), 2, &c, &err));
  CHECK_CONTAINS(err.msg, "i64");
  c = attrs_ia(1, SH(2));
  CHECK(add_fails(g, DF_OP_CONCAT, IDS(a, a), 2, &c, &err));
  CHECK_CONTAINS(err.msg, "axis 2");
  df_graph_free(g);
}

static void test_errors_indexing(void) {
  df_graph *g = df_graph_new();
  df_err err;
  df_node_id x = INPUT(g, "x", DF_F64, 3, SH(2, 4, 3));
  df_node_id fi = INPUT(g, "fi", DF_F64, 2, SH(2, 2));
  df_node_id i3 = INPUT(g, "i3", DF_I64, 2, SH(3, 2));
  df_node_id i1 = INPUT(g, "i1", DF_I64, 1, SH(2));
  df_node_id i12 = INPUT(g, "i12", DF_I64, 2, SH(1, 2));
  df_attrs at = attrs_ia(1, SH(1));
  CHECK(add_fails(g, DF_OP_GATHER, IDS(x, fi), 2, &at, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: gather:");
  CHECK_CONTAINS(err.msg, "f64");
  /* leading dim 3 vs x's 2 */
  CHECK(add_fails(g, DF_OP_GATHER, IDS(x, i3), 2, &at, &err));
  CHECK_CONTAINS(err.msg, "[2, 4, 3]");
  CHECK_CONTAINS(err.msg, "[3, 2]");
  /* idx without the leading dims */
  CHECK(add_fails(g, DF_OP_GATHER, IDS(x, i1), 2, &at, &err));
  CHECK_CONTAINS(err.msg, "[2]");
  /* idx's leading 1 does not broadcast against x's 2 */
  CHECK(add_fails(g, DF_OP_GATHER, IDS(x, i12), 2, &at, &err));
  at.ia[0] = 3;
  CHECK(add_fails(g, DF_OP_GATHER, IDS(x, i1), 2, &at, &err));
  CHECK_CONTAINS(err.msg, "axis 3");

  df_node_id mf = INPUT(g, "mf", DF_F32, 2, SH(2, 4));
  df_node_id m3 = INPUT(g, "m3", DF_BOOL, 3, SH(1, 2, 4));
  df_attrs mi = attrs_ia(2, SH(1, 2));
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(mf), 1, &mi, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: mask_index:");
  CHECK_CONTAINS(err.msg, "f32");
  CHECK(add_fails(g, DF_OP_MASK_INDEX, IDS(m3), 1, &mi, &err));
  CHECK_CONTAINS(err.msg, "[1, 2, 4]");
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Run-time errors                                                     */
/* ------------------------------------------------------------------ */

static void test_runtime_errors(void) {
  df_err err;
  /* mask_index: a row with another count */
  df_graph *g = df_graph_new();
  df_node_id m = INPUT(g, "mask", DF_BOOL, 2, SH(2, 4));
  df_node_id idx = MASK_INDEX(g, m, 1, 2, NULL);
  feed bad = {"mask", DF_BOOL, 2, SH(2, 4), VALS(1, 0, 1, 0, 1, 1, 1, 0)};
  CHECK(run_fails(g, idx, &bad, 1, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: mask_index:");
  CHECK_CONTAINS(err.msg, "row");
  CHECK_CONTAINS(err.msg, "row 1 has 3");
  CHECK(err.code == DF_ERUNTIME);
  feed few = {"mask", DF_BOOL, 2, SH(2, 4), VALS(0, 0, 0, 0, 1, 1, 0, 0)};
  CHECK(run_fails(g, idx, &few, 1, &err));
  CHECK_CONTAINS(err.msg, "row 0 has 0");
  df_graph_free(g);

  /* gather: an index out of range is an error, not a crash */
  g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(2, 4));
  df_node_id ix = INPUT(g, "idx", DF_I64, 2, SH(2, 2));
  df_attrs at = attrs_ia(1, SH(1));
  df_node_id y = ADD(g, DF_OP_GATHER, IDS(x, ix), 2, &at);
  const double *xv = VALS(1, 2, 3, 4, 5, 6, 7, 8);
  feed f1[2] = {{"x", DF_F64, 2, SH(2, 4), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(0, 1, 4, 0)}};
  CHECK(run_fails(g, y, f1, 2, &err));
  CHECK_CONTAINS(err.msg, "model.lua:42: gather:");
  CHECK_CONTAINS(err.msg, "index 4");
  feed f2[2] = {{"x", DF_F64, 2, SH(2, 4), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(0, -1, 1, 0)}};
  CHECK(run_fails(g, y, f2, 2, &err));
  CHECK_CONTAINS(err.msg, "index -1");
  feed f3[2] = {{"x", DF_F64, 2, SH(2, 4), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 2, 1)}};
  EXPECT(run_is(g, y, f3, 2, DF_F64, 2, SH(2, 2), VALS(4, 1, 7, 6)));

  /* a missing feed names the input and where it was made */
  CHECK(run_fails(g, y, f3, 1, &err));
  CHECK_CONTAINS(err.msg, "'idx'");
  CHECK_CONTAINS(err.msg, "model.lua:42");
  /* a feed of the wrong shape or dtype names both */
  feed f4[2] = {{"x", DF_F64, 2, SH(4, 2), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 2, 1)}};
  CHECK(run_fails(g, y, f4, 2, &err));
  CHECK_CONTAINS(err.msg, "'x'");
  CHECK_CONTAINS(err.msg, "[2, 4]");
  CHECK_CONTAINS(err.msg, "[4, 2]");
  feed f5[2] = {{"x", DF_F32, 2, SH(2, 4), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 2, 1)}};
  CHECK(run_fails(g, y, f5, 2, &err));
  CHECK_CONTAINS(err.msg, "f32");
  CHECK_CONTAINS(err.msg, "f64");
  feed f6[2] = {{"x", DF_F64, 1, SH(8), xv}, {"idx", DF_I64, 2, SH(2, 2), VALS(3, 0, 2, 1)}};
  CHECK(run_fails(g, y, f6, 2, &err));
  CHECK_CONTAINS(err.msg, "[8]");
  /* an output that is not a node */
  df_tensor *res = NULL;
  df_node_id bogus = 1000;
  CHECK(run_graph(g, &bogus, 1, f3, 2, &res, &err) != 0);
  CHECK(res == NULL);
  CHECK(err.msg[0] != '\0');
  df_graph_free(g);

  /* a feed that no live node needs may be missing */
  g = df_graph_new();
  x = INPUT(g, "x", DF_F64, 1, SH(2));
  df_node_id unused = INPUT(g, "unused", DF_F64, 1, SH(2));
  (void)unused;
  y = OP1(g, DF_OP_NEG, x);
  feed fx = {"x", DF_F64, 1, SH(2), VALS(1, -2)};
  EXPECT(run_is(g, y, &fx, 1, DF_F64, 1, SH(2), VALS(-1, 2)));
  df_graph_free(g);
}

/* ------------------------------------------------------------------ */
/* Live set and DOT                                                    */
/* ------------------------------------------------------------------ */

static char *read_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t r;
  while (buf && (r = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
    n += r;
    if (cap - n - 1 == 0) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(fp);
  if (buf) buf[n] = '\0';
  return buf;
}

static void test_live_and_dot(void) {
  df_graph *g = df_graph_new();
  df_node_id x = INPUT(g, "x", DF_F64, 2, SH(2, 3));          /* 0 */
  df_attrs pa = attrs_src(DF_F64, 1, SH(3));
  pa.str = "w_unused";
  df_node_id w = ADD(g, DF_OP_PARAM, NULL, 0, &pa);          /* 1 */
  df_node_id e = OP1(g, DF_OP_EXP, x);                       /* 2 */
  df_node_id dead = OP1(g, DF_OP_TANH, x);                   /* 3 */
  df_node_id z = OP2(g, DF_OP_ADD, e, x);                    /* 4 */
  df_node_id dead2 = OP2(g, DF_OP_MUL, dead, w);             /* 5 */
  CHECK(df_graph_count(g) == 6);

  unsigned char live[6];
  df_graph_live(g, &z, 1, live);
  CHECK(live[x] && !live[w] && live[e] && !live[dead] && live[z] && !live[dead2]);
  df_node_id both[2] = {z, dead};
  df_graph_live(g, both, 2, live);
  CHECK(live[x] && !live[w] && live[e] && live[dead] && live[z] && !live[dead2]);

  /* the plan runs the live nodes only (w is never fed) */
  df_err err;
  df_plan *p = df_device_ref.compile(g, &z, 1, &err);
  CHECK(p != NULL);
  if (p) {
    df_plan_stats st;
    df_device_ref.plan_stats(p, &st);
    CHECK(st.nodes == 3);
    df_device_ref.plan_free(p);
  }

  char path[] = "/tmp/dferc_test_ops_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0) {
    df_graph_free(g);
    return;
  }
  close(fd);
  const char *names[1] = {"logits"};
  df_err_clear(&err);
  CHECK(df_graph_write_dot(g, &z, names, 1, path, &err) == 0);
  char *dot = read_file(path);
  CHECK(dot != NULL);
  if (dot) {
    CHECK_CONTAINS(dot, "digraph");
    CHECK_CONTAINS(dot, "input x");
    CHECK_CONTAINS(dot, "exp");
    CHECK_CONTAINS(dot, "add");
    CHECK_CONTAINS(dot, "[2, 3] f64");
    CHECK_CONTAINS(dot, "model.lua:42");
    CHECK_CONTAINS(dot, "logits");
    CHECK_CONTAINS(dot, "n0 -> n2");
    CHECK_CONTAINS(dot, "n2 -> n4");
    CHECK(strstr(dot, "tanh") == NULL);
    CHECK(strstr(dot, "w_unused") == NULL);
    CHECK(strstr(dot, "mul") == NULL);
    CHECK(strstr(dot, "n3") == NULL);
  }
  free(dot);

  /* no outputs: every node */
  CHECK(df_graph_write_dot(g, NULL, NULL, 0, path, &err) == 0);
  dot = read_file(path);
  CHECK(dot != NULL);
  if (dot) {
    CHECK_CONTAINS(dot, "digraph");
    CHECK_CONTAINS(dot, "tanh");
    CHECK_CONTAINS(dot, "param w_unused");
    CHECK_CONTAINS(dot, "mul");
    CHECK_CONTAINS(dot, "n3 -> n5");
  }
  free(dot);
  unlink(path);

  df_err_clear(&err);
  CHECK(df_graph_write_dot(g, &z, NULL, 1, "/nonexistent-dferc-dir/g.dot", &err) != 0);
  CHECK_CONTAINS(err.msg, "/nonexistent-dferc-dir/g.dot");
  df_graph_free(g);
}

int main(void) {
  TEST(test_fill);
  TEST(test_iota);
  TEST(test_sinusoid);
  TEST(test_unary);
  TEST(test_cast);
  TEST(test_binary_broadcast);
  TEST(test_int_div);
  TEST(test_compare);
  TEST(test_where);
  TEST(test_matmul);
  TEST(test_reduce);
  TEST(test_var);
  TEST(test_softmax);
  TEST(test_layernorm);
  TEST(test_reshape);
  TEST(test_expand);
  TEST(test_permute);
  TEST(test_slice);
  TEST(test_concat);
  TEST(test_gather);
  TEST(test_mask_index);
  TEST(test_mask_index_region_degenerate);
  TEST(test_size_one_dims);
  TEST(test_zero_size);
  TEST(test_scalars);
  TEST(test_errors_elementwise);
  TEST(test_errors_sources);
  TEST(test_errors_products);
  TEST(test_errors_layout);
  TEST(test_errors_indexing);
  TEST(test_runtime_errors);
  TEST(test_live_and_dot);
  return check_exit();
}

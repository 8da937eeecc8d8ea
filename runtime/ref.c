/*
** ref.c -- the reference device: a plain C interpreter of the graph.
**
** Every tensor is held as float64 (integers and bools exactly), every op
** runs its reference kernel from the op table, and intermediates are freed
** after their last use.  Slow and simple on purpose: it is the oracle that
** every other backend is tested against.
*/
#include "runtime/device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct df_plan {
  const df_graph *g;
  int n_out;
  df_node_id *outputs;
  unsigned char *live;
  int *last_use;        /* per node: last node id that reads it (or n for outputs) */
  double peak_bytes;
  int check_finite;
};

static int ref_supports(df_op op) { return df_op_info(op) != NULL; }

static df_plan *ref_compile(const df_graph *g, const df_node_id *outputs, int n_out,
                            df_err *err) {
  int n = df_graph_count(g);
  df_plan *p = calloc(1, sizeof *p);
  if (p) {
    p->outputs = malloc((size_t)(n_out ? n_out : 1) * sizeof *p->outputs);
    p->live = malloc((size_t)n + 1);
    p->last_use = malloc(((size_t)n + 1) * sizeof *p->last_use);
  }
  if (!p || !p->outputs || !p->live || !p->last_use) {
    if (p) {
      free(p->outputs);
      free(p->live);
      free(p->last_use);
    }
    free(p);
    df_err_set(err, DF_ENOMEM, "ref: out of memory");
    return NULL;
  }
  p->g = g;
  p->n_out = n_out;
  for (int i = 0; i < n_out; i++) {
    if (outputs[i] < 0 || outputs[i] >= n) {
      free(p->outputs), free(p->live), free(p->last_use), free(p);
      df_err_set(err, DF_EINVAL, "ref: output %d is not a node of the graph", i + 1);
      return NULL;
    }
    p->outputs[i] = outputs[i];
  }
  df_graph_live(g, outputs, n_out, p->live);
  for (int i = 0; i < n; i++) p->last_use[i] = -1;
  for (int i = 0; i < n; i++) {
    if (!p->live[i]) continue;
    const df_node *nd = df_graph_node(g, i);
    for (int k = 0; k < nd->ninputs; k++) p->last_use[nd->inputs[k]] = i;
  }
  for (int i = 0; i < n_out; i++) p->last_use[outputs[i]] = n; /* kept to the end */
  return p;
}

static void ref_set_check(df_plan *p, int on) { p->check_finite = on; }

/* The first non-finite element of a float node's buffer, or -1. */
static int64_t first_non_finite(const df_node *nd, const double *buf) {
  if (!df_dtype_is_float(nd->dtype)) return -1;
  int64_t n = df_shape_numel(nd->ndim, nd->shape);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(buf[i])) return i;
  return -1;
}

static void ref_plan_free(df_plan *p) {
  if (!p) return;
  free(p->outputs);
  free(p->live);
  free(p->last_use);
  free(p);
}

static void ref_stats(const df_plan *p, df_plan_stats *st) {
  int c = 0;
  for (int i = 0; i < df_graph_count(p->g); i++) c += p->live[i];
  st->nodes = c;
  st->peak_bytes = p->peak_bytes;
}

/* Bind a source node to its feed, converting to float64. */
static int bind_feed(const df_node *nd, const df_binding *feeds, int n_feeds, double *buf,
                     df_err *err) {
  const df_tensor *t = df_find_feed(nd, feeds, n_feeds, err);
  if (!t) return err && err->code ? err->code : DF_EINVAL;
  df_dtype_convert(DF_F64, buf, t->dtype, t->data, (size_t)df_tensor_numel(t));
  return 0;
}

static int ref_run(df_plan *p, const df_binding *feeds, int n_feeds, df_tensor **outputs,
                   df_err *err) {
  const df_graph *g = p->g;
  int n = df_graph_count(g), rc = 0;
  if (df_check_outputs(g, p->outputs, p->n_out, outputs, err)) return err->code;
  df_tensor **given = calloc((size_t)p->n_out + 1, sizeof *given);
  double **buf = calloc((size_t)n + 1, sizeof *buf);
  if (!buf || !given) {
    free(buf);
    free(given);
    return df_err_set(err, DF_ENOMEM, "ref: out of memory");
  }
  for (int i = 0; i < p->n_out; i++) given[i] = outputs[i];
  double live_bytes = 0;
  p->peak_bytes = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    if (!p->live[i]) continue;
    const df_node *nd = df_graph_node(g, i);
    int64_t numel = df_shape_numel(nd->ndim, nd->shape);
    buf[i] = malloc((size_t)(numel ? numel : 1) * sizeof(double));
    if (!buf[i]) {
      rc = df_err_set(err, DF_ENOMEM, "%s:%d: %s: out of memory for %lld elements", nd->file,
                      nd->line, df_op_name(nd->op), (long long)numel);
      break;
    }
    live_bytes += (double)numel * 8;
    if (live_bytes > p->peak_bytes) p->peak_bytes = live_bytes;
    if (nd->op == DF_OP_INPUT || nd->op == DF_OP_PARAM) {
      rc = bind_feed(nd, feeds, n_feeds, buf[i], err);
    } else {
      const df_node *in[256];
      const double *x[256];
      for (int k = 0; k < nd->ninputs; k++) {
        in[k] = df_graph_node(g, nd->inputs[k]);
        x[k] = buf[nd->inputs[k]];
      }
      df_err e = {0};
      if (df_op_info(nd->op)->ref(nd, in, x, buf[i], &e))
        rc = df_err_set(err, e.code, "%s:%d: %s: %s", nd->file, nd->line, df_op_name(nd->op),
                        e.msg);
    }
    if (rc == 0 && p->check_finite) {
      int64_t bad = first_non_finite(nd, buf[i]);
      if (bad >= 0) {
        char sb[160];
        rc = df_err_set(err, DF_ERUNTIME, "first non-finite tensor: %s:%d: %s%s%s %s holds %g at "
                        "element %lld", nd->file, nd->line, df_op_name(nd->op),
                        nd->attrs.str ? " " : "", nd->attrs.str ? nd->attrs.str : "",
                        df_node_shape_str(nd, sb, sizeof sb), buf[i][bad], (long long)bad);
      }
    }
    /* free inputs whose last reader was this node */
    for (int k = 0; k < nd->ninputs; k++) {
      df_node_id in = nd->inputs[k];
      if (p->last_use[in] == i && buf[in]) {
        const df_node *ni = df_graph_node(g, in);
        live_bytes -= (double)df_shape_numel(ni->ndim, ni->shape) * 8;
        free(buf[in]);
        buf[in] = NULL;
      }
    }
  }
  for (int i = 0; i < p->n_out && rc == 0; i++) {
    const df_node *nd = df_graph_node(g, p->outputs[i]);
    if (!given[i]) outputs[i] = df_tensor_new(nd->dtype, nd->ndim, nd->shape, err);
    if (!outputs[i]) {
      rc = DF_ENOMEM;
      break;
    }
    df_dtype_convert(nd->dtype, outputs[i]->data, DF_F64, buf[p->outputs[i]],
                     (size_t)df_tensor_numel(outputs[i]));
  }
  if (rc)
    for (int i = 0; i < p->n_out; i++) {
      if (!given[i]) df_tensor_unref(outputs[i]);
      outputs[i] = given[i];
    }
  for (int i = 0; i < n; i++) free(buf[i]);
  free(buf);
  free(given);
  return rc;
}

/* ref's device memory is host memory. */
static void *ref_alloc(size_t nbytes, df_err *err) {
  void *p = malloc(nbytes ? nbytes : 1);
  if (!p) df_err_set(err, DF_ENOMEM, "ref: out of memory for %zu bytes", nbytes);
  return p;
}

static int ref_copy(void *dst, const void *src, size_t nbytes, df_err *err) {
  memcpy(dst, src, nbytes);
  return 0;
}

const df_device df_device_ref = {
    .name = "ref",
    .description = "reference interpreter (plain C, float64)",
    .available = NULL,
    .supports_op = ref_supports,
    .compile = ref_compile,
    .run = ref_run,
    .plan_stats = ref_stats,
    .set_check_finite = ref_set_check,
    .plan_free = ref_plan_free,
    .buffer_alloc = ref_alloc,
    .buffer_free = free,
    .copy_to_device = ref_copy,
    .copy_to_host = ref_copy,
};

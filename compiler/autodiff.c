/*
** autodiff.c -- see autodiff.h.
**
** Nodes are numbered in topological order, so one sweep from the loss
** down to the smallest wrt id visits every node after all its consumers.
** Only nodes on a path from some wrt node to the loss get gradients.
*/
#include "compiler/autodiff.h"

#include <stdlib.h>
#include <string.h>

#include "compiler/build.h"

static int recompute_mode = -1; /* -1: not yet read from DFERC_RECOMPUTE */

int df_autodiff_recompute(void) {
  if (recompute_mode < 0) {
    const char *e = getenv("DFERC_RECOMPUTE");
    recompute_mode = !(e && strcmp(e, "0") == 0);
  }
  return recompute_mode;
}

int df_autodiff_set_recompute(int on) {
  int prev = df_autodiff_recompute();
  recompute_mode = on != 0;
  return prev;
}

int df_autodiff(df_graph *g, df_node_id loss, const df_node_id *wrt, int n, df_node_id *grads,
                df_err *err) {
  int count = df_graph_count(g);
  if (loss < 0 || loss >= count) return df_err_set(err, DF_EINVAL, "autodiff: bad loss node");
  const df_node *ln = df_graph_node(g, loss);
  if (!df_dtype_is_float(ln->dtype))
    return df_err_set(err, DF_EINVAL, "%s:%d: autodiff: the loss must be a float tensor, got %s",
                      ln->file, ln->line, df_dtype_lname(ln->dtype));
  unsigned char *needs = calloc((size_t)count, 1);
  df_node_id *gsum = malloc((size_t)count * sizeof *gsum);
  if (!needs || !gsum) {
    free(needs);
    free(gsum);
    return df_err_set(err, DF_ENOMEM, "autodiff: out of memory");
  }
  for (int i = 0; i < count; i++) gsum[i] = -1;
  /* forward reachability from the wrt nodes */
  int lo = count;
  for (int i = 0; i < n; i++) {
    if (wrt[i] < 0 || wrt[i] >= count) {
      free(needs);
      free(gsum);
      return df_err_set(err, DF_EINVAL, "autodiff: bad wrt node %d", i);
    }
    needs[wrt[i]] = 1;
    if (wrt[i] < lo) lo = wrt[i];
  }
  for (int i = lo; i <= loss; i++) {
    const df_node *nd = df_graph_node(g, i);
    for (int k = 0; k < nd->ninputs && !needs[i]; k++) needs[i] = needs[nd->inputs[k]];
  }
  int rc = 0;
  df_node_id *recomputed = malloc((size_t)count * sizeof *recomputed);
  if (!recomputed) {
    free(needs);
    free(gsum);
    return df_err_set(err, DF_ENOMEM, "autodiff: out of memory");
  }
  for (int i = 0; i < count; i++) recomputed[i] = -1;
  df_builder b = {g, ln->file, ln->line, err, 0, df_autodiff_recompute() ? recomputed : NULL, count};
  if (needs[loss]) gsum[loss] = df_b_fill(&b, 1.0, ln->dtype, ln->ndim, ln->shape);
  for (int i = loss; i >= lo && rc == 0 && !b.failed; i--) {
    if (gsum[i] < 0) continue;
    df_node nd = *df_graph_node(g, i);
    const df_op_desc *d = df_op_info(nd.op);
    int any = 0;
    for (int k = 0; k < nd.ninputs; k++) any |= needs[nd.inputs[k]];
    if (!any) continue;
    if (!d->grad) {
      rc = df_err_set(err, DF_EUNSUPPORTED, "%s:%d: %s: no gradient rule, but a parameter's "
                      "gradient flows through it", nd.file, nd.line, d->name);
      break;
    }
    df_node_id gx[256];
    for (int k = 0; k < nd.ninputs; k++) gx[k] = -1;
    b.file = nd.file;
    b.line = nd.line;
    rc = d->grad(&b, i, gsum[i], gx);
    if (rc == 0 && b.failed) rc = err && err->code ? err->code : DF_EINVAL;
    for (int k = 0; k < nd.ninputs && rc == 0; k++) {
      df_node_id in = nd.inputs[k];
      if (gx[k] < 0 || !needs[in]) continue;
      gsum[in] = gsum[in] < 0 ? gx[k] : df_b_binary(&b, DF_OP_ADD, gsum[in], gx[k]);
    }
  }
  if (rc == 0 && b.failed) rc = err && err->code ? err->code : DF_EINVAL;
  for (int i = 0; i < n && rc == 0; i++) {
    df_node_id w = wrt[i];
    if (gsum[w] >= 0) {
      grads[i] = gsum[w];
    } else {
      const df_node *wn = df_graph_node(g, w);
      b.file = wn->file;
      b.line = wn->line;
      grads[i] = df_b_fill(&b, 0.0, wn->dtype, wn->ndim, wn->shape);
      if (grads[i] < 0) rc = err && err->code ? err->code : DF_EINVAL;
    }
  }
  free(needs);
  free(gsum);
  free(recomputed);
  return rc;
}

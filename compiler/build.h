/*
** build.h -- short-hand for adding nodes from C (gradient rules, passes).
**
** A df_builder carries the graph, the source location every new node gets
** (a gradient node records the forward node's file:line) and a sticky
** error: once a call fails, it and every later call return -1 without
** touching the graph, so a rule can chain calls and check once at the end.
** Any argument that is -1 makes the call return -1.
*/
#ifndef DF_BUILD_H
#define DF_BUILD_H

#include "compiler/graph.h"

typedef struct df_builder {
  df_graph *g;
  const char *file;
  int line;
  df_err *err;
  int failed;
  /* inside autodiff: per forward node (ids below nforward), its copy made
  ** by df_b_recompute, or -1; NULL elsewhere (df_b_recompute is then x) */
  df_node_id *recomputed;
  int nforward;
} df_builder;

df_node_id df_b_op(df_builder *b, df_op op, const df_node_id *in, int n, const df_attrs *a);
df_node_id df_b_unary(df_builder *b, df_op op, df_node_id x);
/*
** For a gradient rule: a fresh copy of the forward node x when it is cheap
** to recompute from what the backward keeps anyway -- gelu(v), layernorm(v,
** w, b) (their own gradients keep v), or a reshape of one -- so that the
** forward's copy dies at its last forward use instead of living until the
** backward's weight-gradient product (the activation peak at the end of the
** forward drops by it).  One copy per node and autodiff; x itself outside
** autodiff or for any other node.
*/
df_node_id df_b_recompute(df_builder *b, df_node_id x);
df_node_id df_b_binary(df_builder *b, df_op op, df_node_id x, df_node_id y);
/* A scalar constant [] of dtype. */
df_node_id df_b_scalar(df_builder *b, double v, df_dtype dt);
df_node_id df_b_fill(df_builder *b, double v, df_dtype dt, int ndim, const int64_t *shape);
/* Reduce over the axes in mask (bit i = axis i). */
df_node_id df_b_reduce(df_builder *b, df_op op, df_node_id x, int64_t mask, int keepdim,
                       int correction);
df_node_id df_b_reshape(df_builder *b, df_node_id x, int ndim, const int64_t *shape);
df_node_id df_b_expand(df_builder *b, df_node_id x, int ndim, const int64_t *shape);
df_node_id df_b_permute(df_builder *b, df_node_id x, const int64_t *perm);
df_node_id df_b_slice(df_builder *b, df_node_id x, int axis, int64_t start, int64_t end,
                      int64_t step);
df_node_id df_b_concat(df_builder *b, const df_node_id *xs, int n, int axis);
df_node_id df_b_matmul(df_builder *b, df_node_id x, df_node_id y, int ta, int tb);
df_node_id df_b_where(df_builder *b, df_node_id c, df_node_id x, df_node_id y);
df_node_id df_b_cast(df_builder *b, df_node_id x, df_dtype dt);
df_node_id df_b_pad(df_builder *b, df_node_id x, int axis, int64_t before, int64_t after);
df_node_id df_b_gather(df_builder *b, df_node_id x, df_node_id idx, int axis);
/* out (shape ndim/shape) = zeros; out[q, idx[q, m], s] += src[q, m, s]. */
df_node_id df_b_scatter_add(df_builder *b, df_node_id idx, df_node_id src, int axis, int ndim,
                            const int64_t *shape);
/* Sum gy over the dims that broadcasting added or stretched, giving a
** tensor of shape (ndim, shape). */
df_node_id df_b_unbroadcast(df_builder *b, df_node_id gy, int ndim, const int64_t *shape);

/* Copy of a node (the node array may move while a rule adds nodes). */
df_node df_b_node(df_builder *b, df_node_id id);

#endif

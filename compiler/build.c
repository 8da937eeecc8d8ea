/*
** build.c -- see build.h.
*/
#include "compiler/build.h"

#include <string.h>

df_node_id df_b_op(df_builder *b, df_op op, const df_node_id *in, int n, const df_attrs *a) {
  if (b->failed) return -1;
  for (int i = 0; i < n; i++)
    if (in[i] < 0) {
      b->failed = 1;
      return -1;
    }
  df_node_id id = df_graph_add(b->g, op, in, n, a, b->file, b->line, b->err);
  if (id < 0) b->failed = 1;
  return id;
}


df_node df_b_node(df_builder *b, df_node_id id) { return *df_graph_node(b->g, id); }

df_node_id df_b_unary(df_builder *b, df_op op, df_node_id x) { return df_b_op(b, op, &x, 1, NULL); }

df_node_id df_b_recompute(df_builder *b, df_node_id x) {
  if (!b->recomputed || x < 0 || x >= b->nforward) return x;
  if (b->recomputed[x] >= 0) return b->recomputed[x];
  df_node n = df_b_node(b, x);
  df_node_id r = x;
  const char *file = b->file;
  int line = b->line;
  b->file = n.file, b->line = n.line; /* the copy reports the forward's place */
  if (n.op == DF_OP_GELU) {
    r = df_b_unary(b, DF_OP_GELU, n.inputs[0]);
  } else if (n.op == DF_OP_LAYERNORM) {
    r = df_b_op(b, DF_OP_LAYERNORM, n.inputs, 3, &n.attrs);
  } else if (n.op == DF_OP_RESHAPE) {
    df_node_id src = df_b_recompute(b, n.inputs[0]);
    if (src != n.inputs[0]) r = df_b_reshape(b, src, n.ndim, n.shape);
  }
  b->file = file, b->line = line;
  if (r < 0) return x; /* b->failed is set: the caller's status says so */
  b->recomputed[x] = r;
  return r;
}

df_node_id df_b_binary(df_builder *b, df_op op, df_node_id x, df_node_id y) {
  df_node_id in[2] = {x, y};
  return df_b_op(b, op, in, 2, NULL);
}

df_node_id df_b_fill(df_builder *b, double v, df_dtype dt, int ndim, const int64_t *shape) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nfa = 1;
  a.fa[0] = v;
  a.dtype = dt;
  a.ndim = ndim;
  if (ndim) memcpy(a.shape, shape, (size_t)ndim * sizeof *shape);
  return df_b_op(b, DF_OP_FILL, NULL, 0, &a);
}

df_node_id df_b_scalar(df_builder *b, double v, df_dtype dt) { return df_b_fill(b, v, dt, 0, NULL); }

df_node_id df_b_reduce(df_builder *b, df_op op, df_node_id x, int64_t mask, int keepdim,
                       int correction) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 3;
  a.ia[0] = mask;
  a.ia[1] = keepdim;
  a.ia[2] = correction;
  return df_b_op(b, op, &x, 1, &a);
}

static df_node_id shaped(df_builder *b, df_op op, df_node_id x, int ndim, const int64_t *shape) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.ndim = ndim;
  if (ndim) memcpy(a.shape, shape, (size_t)ndim * sizeof *shape);
  return df_b_op(b, op, &x, 1, &a);
}

df_node_id df_b_reshape(df_builder *b, df_node_id x, int ndim, const int64_t *shape) {
  if (x >= 0 && !b->failed) {
    const df_node *n = df_graph_node(b->g, x);
    if (n->ndim == ndim && memcmp(n->shape, shape, (size_t)ndim * sizeof *shape) == 0) return x;
  }
  return shaped(b, DF_OP_RESHAPE, x, ndim, shape);
}

df_node_id df_b_expand(df_builder *b, df_node_id x, int ndim, const int64_t *shape) {
  return shaped(b, DF_OP_EXPAND, x, ndim, shape);
}

df_node_id df_b_permute(df_builder *b, df_node_id x, const int64_t *perm) {
  if (x < 0 || b->failed) return -1;
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = df_graph_node(b->g, x)->ndim;
  memcpy(a.ia, perm, (size_t)a.nia * sizeof *perm);
  return df_b_op(b, DF_OP_PERMUTE, &x, 1, &a);
}

df_node_id df_b_slice(df_builder *b, df_node_id x, int axis, int64_t start, int64_t end,
                      int64_t step) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 4;
  a.ia[0] = axis;
  a.ia[1] = start;
  a.ia[2] = end;
  a.ia[3] = step;
  return df_b_op(b, DF_OP_SLICE, &x, 1, &a);
}

df_node_id df_b_concat(df_builder *b, const df_node_id *xs, int n, int axis) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 1;
  a.ia[0] = axis;
  return df_b_op(b, DF_OP_CONCAT, xs, n, &a);
}

df_node_id df_b_matmul(df_builder *b, df_node_id x, df_node_id y, int ta, int tb) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 2;
  a.ia[0] = ta;
  a.ia[1] = tb;
  df_node_id in[2] = {x, y};
  return df_b_op(b, DF_OP_MATMUL, in, 2, &a);
}

df_node_id df_b_where(df_builder *b, df_node_id c, df_node_id x, df_node_id y) {
  df_node_id in[3] = {c, x, y};
  return df_b_op(b, DF_OP_WHERE, in, 3, NULL);
}

df_node_id df_b_cast(df_builder *b, df_node_id x, df_dtype dt) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.dtype = dt;
  return df_b_op(b, DF_OP_CAST, &x, 1, &a);
}

df_node_id df_b_pad(df_builder *b, df_node_id x, int axis, int64_t before, int64_t after) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 3;
  a.ia[0] = axis;
  a.ia[1] = before;
  a.ia[2] = after;
  return df_b_op(b, DF_OP_PAD, &x, 1, &a);
}

df_node_id df_b_gather(df_builder *b, df_node_id x, df_node_id idx, int axis) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 1;
  a.ia[0] = axis;
  df_node_id in[2] = {x, idx};
  return df_b_op(b, DF_OP_GATHER, in, 2, &a);
}

df_node_id df_b_scatter_add(df_builder *b, df_node_id idx, df_node_id src, int axis, int ndim,
                            const int64_t *shape) {
  df_attrs a;
  memset(&a, 0, sizeof a);
  a.nia = 1;
  a.ia[0] = axis;
  a.ndim = ndim;
  memcpy(a.shape, shape, (size_t)ndim * sizeof *shape);
  df_node_id in[2] = {idx, src};
  return df_b_op(b, DF_OP_SCATTER_ADD, in, 2, &a);
}

df_node_id df_b_unbroadcast(df_builder *b, df_node_id gy, int ndim, const int64_t *shape) {
  if (gy < 0 || b->failed) return -1;
  const df_node *n = df_graph_node(b->g, gy);
  int gnd = n->ndim;
  int64_t mask = 0;
  for (int i = 0; i < gnd; i++) {
    int j = ndim - gnd + i;
    if (j < 0 || (shape[j] == 1 && n->shape[i] != 1)) mask |= (int64_t)1 << i;
  }
  df_node_id r = mask ? df_b_reduce(b, DF_OP_SUM, gy, mask, 0, 0) : gy;
  return df_b_reshape(b, r, ndim, shape);
}

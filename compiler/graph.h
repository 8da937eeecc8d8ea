/*
** graph.h -- the Graph IR: a DAG of tensor operations with static shapes.
**
** A df_graph owns its nodes and every string and array they point to (one
** arena per graph; df_graph_free() ends them all).  Nodes are numbered in
** creation order, which is a topological order: a node's inputs always
** have smaller ids.  Every node records the source location (the Lua
** script's file:line) that created it, and its shape and dtype are inferred
** by the op's shape rule when it is added, so a mismatch is reported at the
** line that caused it:
**     mae_dfer.lua:42: matmul: [8, 101, 512] x [384, 512]: inner sizes differ
*/
#ifndef DF_GRAPH_H
#define DF_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/dtype.h"
#include "compiler/err.h"
#include "ops/ops.h"

#define DF_MAX_IATTR 16
#define DF_MAX_FATTR 4

typedef df_node_id_t df_node_id;

/* Attributes given when a node is built; their meaning is per op (see
** ops/ops.def).  Source ops (input, param, fill, iota, ...) also give the
** output dtype and shape here. */
typedef struct df_attrs {
  int nia;
  int64_t ia[DF_MAX_IATTR];
  int nfa;
  double fa[DF_MAX_FATTR];
  const char *str;          /* input/param name; copied into the arena */
  df_dtype dtype;           /* source ops, cast */
  int ndim;                 /* source ops, reshape, expand */
  int64_t shape[DF_MAX_DIMS];
} df_attrs;

typedef struct df_node {
  df_op op;
  df_dtype dtype;           /* inferred */
  int ndim;                 /* inferred */
  int64_t shape[DF_MAX_DIMS];
  int ninputs;
  const df_node_id *inputs; /* arena */
  df_attrs attrs;           /* attrs.str points into the arena */
  const char *file;         /* arena; "?" when unknown */
  int line;
} df_node;

typedef struct df_graph df_graph;

df_graph *df_graph_new(void);
void df_graph_free(df_graph *g);

int df_graph_count(const df_graph *g);
/* Borrowed pointer, valid until the next df_graph_add (the node array may
** move as it grows).  id must be in [0, count). */
const df_node *df_graph_node(const df_graph *g, df_node_id id);

/* Add a node: checks arity and input ids, runs the op's shape rule, and on
** failure returns -1 with "file:line: op: what is wrong" in err (and the
** graph unchanged).  `attrs` may be NULL. */
df_node_id df_graph_add(df_graph *g, df_op op, const df_node_id *inputs,
                        int ninputs, const df_attrs *attrs, const char *file,
                        int line, df_err *err);

/* Find a source node (input or param) by name, or -1. */
df_node_id df_graph_find(const df_graph *g, df_op op, const char *name);

/* Bytes allocated in the arena (for reports). */
size_t df_graph_arena_bytes(const df_graph *g);

/* "[2, 3]" of a node's shape into buf. */
const char *df_node_shape_str(const df_node *n, char *buf, size_t bufsz);

/* Write the graph (or the part that reaches `outputs`, when n_outputs > 0)
** in Graphviz DOT.  Returns 0 or an error. */
int df_graph_write_dot(const df_graph *g, const df_node_id *outputs,
                       const char *const *output_names, int n_outputs,
                       const char *path, df_err *err);

/* Mark the nodes that `outputs` depend on: live[i] = 1.  `live` has
** df_graph_count() entries. */
void df_graph_live(const df_graph *g, const df_node_id *outputs, int n,
                   unsigned char *live);

#endif

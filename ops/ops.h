/*
** ops.h -- the op table: one descriptor per operation (see ops.def).
**
** A descriptor holds the op's name, arity, flags, its shape rule (infers
** the output dtype and shape from the inputs and attributes, or explains
** why it cannot) and its reference kernel (plain C over float64 buffers,
** used by the `ref` device as the oracle for every other backend).
*/
#ifndef DF_OPS_H
#define DF_OPS_H

#include <stdint.h>

#include "compiler/err.h"

struct df_node;
typedef int32_t df_node_id_t; /* = df_node_id of graph.h */

typedef enum {
#define X(e, name, mn, mx, fl, shape, ref, grad) DF_OP_##e,
#include "ops/ops.def"
#undef X
  DF_OP_COUNT
} df_op;

enum {
  DF_OPF_SOURCE = 1u << 0,   /* no inputs; produces a tensor from attrs or feeds */
  DF_OPF_ELEMWISE = 1u << 1, /* output element i depends on input elements i (broadcast) */
  DF_OPF_REDUCE = 1u << 2,   /* reduction over ia[0]'s axes */
  DF_OPF_VIEW = 1u << 3      /* same bytes, new shape */
};

/* Shape rule: fill n->dtype, n->ndim, n->shape from `in` (n->ninputs
** nodes) and n->attrs.  On failure set err (without the "file:line: op:"
** prefix, which the graph adds) and return its code. */
typedef int (*df_shape_fn)(struct df_node *n, const struct df_node *const *in,
                           df_err *err);

/* Reference kernel: y (numel of n) from x[i] (numel of in[i]), every
** buffer float64 in row-major order (integers and bools held exactly as
** doubles).  Returns 0, or an error for a failed run-time check. */
typedef int (*df_ref_fn)(const struct df_node *n, const struct df_node *const *in,
                         const double *const *x, double *y, df_err *err);

struct df_builder;

/* Gradient rule: given the node and gy (the gradient of the loss with
** respect to its output), add nodes computing the gradient with respect
** to each input and store their ids in gx[i]; gx[i] stays -1 for an input
** that gets none (integer inputs, indices).  Nodes are added through the
** builder, which carries the forward node's file:line. */
typedef int (*df_grad_fn)(struct df_builder *b, df_node_id_t node, df_node_id_t gy,
                          df_node_id_t *gx);

typedef struct df_op_desc {
  const char *name;
  int min_inputs, max_inputs;
  unsigned flags;
  df_shape_fn shape;
  df_ref_fn ref;
  df_grad_fn grad;  /* NULL: not differentiable (sources, comparisons, indices) */
} df_op_desc;

/* Normalise an axis in [-ndim, ndim) to [0, ndim); -1 when out of range. */
static inline int df_axis(int64_t axis, int ndim) {
  if (axis < 0) axis += ndim;
  return (axis < 0 || axis >= ndim) ? -1 : (int)axis;
}

const df_op_desc *df_op_info(df_op op);
const char *df_op_name(df_op op);
/* Look an op up by name; returns 0 or -1. */
int df_op_parse(const char *name, df_op *out);

#endif

/*
** ops_impl.h -- what the op files share: the declarations of every shape
** rule and reference kernel named in ops.def, and index helpers.
** Internal to ops/.
*/
#ifndef DF_OPS_IMPL_H
#define DF_OPS_IMPL_H

#include <stdint.h>

#include "compiler/build.h"
#include "compiler/graph.h"
#include "ops/ops.h"
#include "runtime/tensor.h"

#define SHAPE_FN(f) int f(df_node *n, const df_node *const *in, df_err *err)
#define REF_FN(f)                                                          \
  int f(const df_node *n, const df_node *const *in, const double *const *x, \
        double *y, df_err *err)

SHAPE_FN(df_shape_source); SHAPE_FN(df_shape_iota); SHAPE_FN(df_shape_sinusoid);
SHAPE_FN(df_shape_rand);
SHAPE_FN(df_shape_unary_float); SHAPE_FN(df_shape_cast); SHAPE_FN(df_shape_binary);
SHAPE_FN(df_shape_compare); SHAPE_FN(df_shape_where); SHAPE_FN(df_shape_matmul);
SHAPE_FN(df_shape_reduce); SHAPE_FN(df_shape_axis_float); SHAPE_FN(df_shape_layernorm);
SHAPE_FN(df_shape_reshape); SHAPE_FN(df_shape_expand); SHAPE_FN(df_shape_permute);
SHAPE_FN(df_shape_slice); SHAPE_FN(df_shape_concat); SHAPE_FN(df_shape_gather);
SHAPE_FN(df_shape_mask_index); SHAPE_FN(df_shape_pad); SHAPE_FN(df_shape_scatter_add);
SHAPE_FN(df_shape_attention); SHAPE_FN(df_shape_recon_loss);

REF_FN(df_ref_fill); REF_FN(df_ref_iota); REF_FN(df_ref_sinusoid); REF_FN(df_ref_rand);
REF_FN(df_ref_unary); REF_FN(df_ref_cast); REF_FN(df_ref_binary);
REF_FN(df_ref_where); REF_FN(df_ref_matmul); REF_FN(df_ref_reduce);
REF_FN(df_ref_softmax); REF_FN(df_ref_layernorm); REF_FN(df_ref_copy);
REF_FN(df_ref_expand); REF_FN(df_ref_permute); REF_FN(df_ref_slice);
REF_FN(df_ref_concat); REF_FN(df_ref_gather); REF_FN(df_ref_mask_index);
REF_FN(df_ref_pad); REF_FN(df_ref_scatter_add);
REF_FN(df_ref_attention); REF_FN(df_ref_attention_grad); REF_FN(df_ref_recon_loss);

#define GRAD_FN(f) int f(df_builder *b, df_node_id node, df_node_id gy, df_node_id *gx)
GRAD_FN(df_grad_unary); GRAD_FN(df_grad_cast); GRAD_FN(df_grad_binary); GRAD_FN(df_grad_attention);
GRAD_FN(df_grad_where); GRAD_FN(df_grad_matmul); GRAD_FN(df_grad_reduce);
GRAD_FN(df_grad_softmax); GRAD_FN(df_grad_layernorm); GRAD_FN(df_grad_reshape);
GRAD_FN(df_grad_expand); GRAD_FN(df_grad_permute); GRAD_FN(df_grad_slice);
GRAD_FN(df_grad_concat); GRAD_FN(df_grad_pad); GRAD_FN(df_grad_gather);
GRAD_FN(df_grad_scatter_add); GRAD_FN(df_grad_recon_loss);

/* The builder's status after a rule: 0 or the recorded error code. */
static inline int df_grad_status(df_builder *b) {
  return b->failed ? (b->err && b->err->code ? b->err->code : DF_EINVAL) : 0;
}

/* Number of elements of a node. */
static inline int64_t df_node_numel(const df_node *n) {
  return df_shape_numel(n->ndim, n->shape);
}

/* Broadcast two shapes (numpy rules, aligned at the right); 0 or DF_ESHAPE. */
int df_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                 int64_t *out, df_err *err);

/* Strides (in elements) of `in_shape` seen through broadcasting to
** `out_shape` (rank nout >= nin): 0 on broadcast dims. */
void df_broadcast_strides(int nin, const int64_t *in_shape, int nout,
                          const int64_t *out_shape, int64_t *strides);

/* scatter_add's walk (ops/index.c): for each source row r = q * M + m of
** node n's source `src` (S elements each), add(ctx, dst, src, S) with the
** element offsets of the result row it adds into and of the source row;
** index(ix, r) is that row's index.  An index out of range (or not an
** integer) stops the walk with the reference's error. */
int df_scatter_add_walk(const df_node *n, const df_node *src, double (*index)(const void *ix, int64_t r),
                        const void *ix, void (*add)(void *ctx, int64_t dst, int64_t src, int64_t S), void *ctx,
                        df_err *err);

/* Row-major strides. */
void df_strides(int ndim, const int64_t *shape, int64_t *strides);


#endif

/*
** autodiff.h -- reverse-mode differentiation of a graph, into the same
** graph: the result is ordinary nodes, which later passes (fusion, code
** generation) see just like the forward ones.
*/
#ifndef DF_AUTODIFF_H
#define DF_AUTODIFF_H

#include "compiler/graph.h"

/* Add nodes computing d sum(loss) / d wrt[i] for each i (the seed is ones
** of the loss's shape, so a [1] or [] loss gives the usual gradient).
** grads[i] gets the node id; a wrt node the loss does not depend on gets
** zeros of its shape.  Every gradient node records the file:line of the
** forward node it comes from.  Returns 0 or an error (an op without a
** gradient rule on the path names the op and its line). */
int df_autodiff(df_graph *g, df_node_id loss, const df_node_id *wrt, int n, df_node_id *grads,
                df_err *err);

/* Whether gradient rules recompute cheap activations (df_b_recompute) in
** the backward instead of keeping them from the forward: on by default
** (less memory at the end of the forward, one more elementwise or
** layernorm pass per weight gradient); off with DFERC_RECOMPUTE=0 or
** df_autodiff_set_recompute(0).  The setter returns the previous value;
** it is process-wide and applies to graphs differentiated afterwards. */
int df_autodiff_recompute(void);
int df_autodiff_set_recompute(int on);

#endif

/*
** recon_cpu.h -- the cpu device's reconstruction loss (ops/recon.c defines
** the ops): float32 data, float64 statistics and sums, one pool task per
** range of masked tokens, each tubelet read once.
**
** Memory: the loss keeps one float64 partial per masked token ([B * M],
** freed before returning) so that its sum is in token order whatever the
** thread count; nothing else.  Borrows every buffer.
*/
#ifndef DF_RECON_CPU_H
#define DF_RECON_CPU_H

#include "compiler/graph.h"

/* Run node n (recon_loss or recon_loss_grad, float32) with its inputs at
** in[0..ninputs) and its result at out.  Returns 0, DF_EUNSUPPORTED for
** another op or dtype (the caller uses the reference kernel), DF_ERUNTIME
** for an index outside the tokens, or DF_ENOMEM, with err set. */
int df_cpu_recon_loss(const df_graph *g, const df_node *n, void *const *in, void *out, df_err *err);

#endif

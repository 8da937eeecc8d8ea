/*
** attention_cpu.h -- the cpu device's fused attention (ops/attention.c
** defines the ops): float32, a block of query rows at a time, products
** through cblas, the softmax in vectorised code.
**
** Memory: per pool task, two [rows, M] float32 blocks (rows <= 64), freed
** before returning; nothing of size N x M.  Borrows every buffer.
*/
#ifndef DF_ATTENTION_CPU_H
#define DF_ATTENTION_CPU_H

#include "compiler/graph.h"

/* Run node n (attention or attention_grad, float32) with its inputs at
** in[0..ninputs) and its result at out (contiguous, row-major).  Returns 0,
** or DF_EUNSUPPORTED for another op or dtype (the caller uses the
** reference kernel), or DF_ENOMEM with err set. */
int df_cpu_attention(const df_graph *g, const df_node *n, void *const *in, void *out, df_err *err);

#endif

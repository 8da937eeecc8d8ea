/*
** kir_interp.h -- a plain interpreter of the Kernel IR: the reference that
** every compiled kernel is checked against (the autotuner checks each
** candidate with it before timing it).
**
** It runs every iteration of a kernel (its PARALLEL loop included, in
** order) on host buffers, with float64 arithmetic for every floating-point
** value (temporaries and accumulators included, whatever their declared
** dtype) and int64 for integers; a value is converted to its buffer's
** dtype only when stored.  Semantics are the code generators': integer
** division truncates and gives 0 for a zero divisor, MAX and MIN let a NaN
** in their first operand win, a float-to-integer cast truncates, a cast to
** a 16-bit float rounds to what that type can hold.  Every
** load and store is bounds-checked.  Slow and simple on purpose.
*/
#ifndef DF_KIR_INTERP_H
#define DF_KIR_INTERP_H

#include "compiler/err.h"
#include "compiler/kir.h"

/* Run k on bufs[i] (k->bufs[i].numel elements of k->bufs[i].dtype each,
** i < k->nbufs).  0, or an error: DF_EINVAL for an index out of a
** buffer's range (naming the kernel, the buffer and the index; what was
** stored before it stays), DF_EUNSUPPORTED for a statement it does not
** know (TILE_DOT), DF_ENOMEM. */
int kir_interp_run(const kir_kernel *k, void *const *bufs, df_err *err);

/* The number of statement executions a run takes (loop trip counts
** multiplied out): what a caller weighs before interpreting a big kernel. */
double kir_interp_work(const kir_kernel *k);

#endif

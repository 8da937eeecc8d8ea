/*
** ops.c -- the op table, built from ops.def.
*/
#include "ops/ops_impl.h"

#include <string.h>

static const df_op_desc op_table[] = {
#define X(e, name, mn, mx, fl, shape, ref, grad) {name, mn, mx, fl, shape, ref, grad},
#include "ops/ops.def"
#undef X
};
_Static_assert(sizeof op_table / sizeof op_table[0] == DF_OP_COUNT,
               "op table out of step with ops.def");

const df_op_desc *df_op_info(df_op op) {
  return (unsigned)op < DF_OP_COUNT ? &op_table[op] : NULL;
}

const char *df_op_name(df_op op) {
  return (unsigned)op < DF_OP_COUNT ? op_table[op].name : "?";
}

int df_op_parse(const char *name, df_op *out) {
  for (int i = 0; i < DF_OP_COUNT; i++)
    if (strcmp(op_table[i].name, name) == 0) {
      *out = (df_op)i;
      return 0;
    }
  return -1;
}

/*
** Index helpers shared by the op files.
*/
int df_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                 int64_t *out, df_err *err) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int ia = na - n + i, ib = nb - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char sa[160], sb[160];
      return df_err_set(err, DF_ESHAPE, "%s and %s do not broadcast (dim %d: %lld vs %lld)",
                        df_shape_str(sa, sizeof sa, na, a), df_shape_str(sb, sizeof sb, nb, b),
                        i, (long long)da, (long long)db);
    }
    out[i] = da == 1 ? db : da;
  }
  *nout = n;
  return 0;
}

void df_strides(int ndim, const int64_t *shape, int64_t *strides) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
}

void df_broadcast_strides(int nin, const int64_t *in_shape, int nout,
                          const int64_t *out_shape, int64_t *strides) {
  int64_t s[DF_MAX_DIMS];
  df_strides(nin, in_shape, s);
  for (int i = 0; i < nout; i++) {
    int j = nin - nout + i;
    strides[i] = (j >= 0 && in_shape[j] == out_shape[i]) ? s[j] : 0;
  }
}

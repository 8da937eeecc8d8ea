/*
** schedule.c -- see schedule.h.
**
** Fusion is by materialisation: a node either gets a slot (memory) or is
** computed inside every kernel that reads it, as an expression of its
** inputs at the reader's index (elementwise ops, broadcasts, reshapes,
** permutes, slices, concats, pads and gathers all become index
** arithmetic).  The rules below decide which nodes get slots; they are
** applied until nothing changes.  Each slotted node that is not a feed or
** a constant becomes one step: a generated kernel (elementwise, reduction
** or row kernel, with its fused prologue), or a library step.
*/
#include "compiler/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tensor.h"

/* ------------------------------------------------------------ op classes */

static int is_feed(df_op op) { return op == DF_OP_INPUT || op == DF_OP_PARAM; }
static int is_lib(df_op op) {
  return op == DF_OP_MATMUL || op == DF_OP_MASK_INDEX || op == DF_OP_SCATTER_ADD || op == DF_OP_RAND ||
         op == DF_OP_ATTENTION || op == DF_OP_ATTENTION_GRAD || op == DF_OP_RECON_LOSS ||
         op == DF_OP_RECON_LOSS_GRAD;
}
static int is_red(df_op op) {
  return op == DF_OP_SUM || op == DF_OP_MEAN || op == DF_OP_AMAX || op == DF_OP_VAR;
}
static int is_row(df_op op) {
  return op == DF_OP_SOFTMAX || op == DF_OP_LOG_SOFTMAX || op == DF_OP_LAYERNORM;
}
static int is_view(df_op op) {
  return op == DF_OP_RESHAPE || op == DF_OP_EXPAND || op == DF_OP_PERMUTE || op == DF_OP_SLICE ||
         op == DF_OP_CAST;
}

static int same_shape(const df_node *a, const df_node *b) {
  return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0;
}

static int is_elementwise(df_op op) {
  switch (op) {
  case DF_OP_NEG: case DF_OP_EXP: case DF_OP_LOG: case DF_OP_SQRT: case DF_OP_RSQRT: case DF_OP_TANH:
  case DF_OP_ERF: case DF_OP_GELU: case DF_OP_ABS: case DF_OP_RECIP: case DF_OP_CAST: case DF_OP_ADD: case DF_OP_SUB:
  case DF_OP_MUL: case DF_OP_DIV: case DF_OP_MAX: case DF_OP_MIN: case DF_OP_POW: case DF_OP_EQ:
  case DF_OP_NE: case DF_OP_LT: case DF_OP_LE: case DF_OP_GT: case DF_OP_GE: case DF_OP_WHERE:
    return 1;
  default: return 0;
  }
}

/* Cheap to recompute anywhere: a slot, a constant, or a view of one. */
static int cheap(const df_graph *g, df_node_id n, const unsigned char *mat) {
  for (;;) {
    const df_node *nd = df_graph_node(g, n);
    if (mat[n] || nd->op == DF_OP_FILL || nd->op == DF_OP_IOTA) return 1;
    if (!is_view(nd->op)) return 0;
    n = nd->inputs[0];
  }
}

/* ------------------------------------------------------------ fusion rules */

static int rule_feed(const df_graph *g, df_node_id n, const int *cons, const unsigned char *m) {
  return is_feed(df_graph_node(g, n)->op);
}
static int rule_table(const df_graph *g, df_node_id n, const int *cons, const unsigned char *m) {
  return df_graph_node(g, n)->op == DF_OP_SINUSOID;
}
static int rule_root(const df_graph *g, df_node_id n, const int *cons, const unsigned char *m) {
  df_op op = df_graph_node(g, n)->op;
  return is_red(op) || is_row(op) || is_lib(op);
}
/* What the consumers of each node are, computed once per build (the
** rules below ask it for every node). */
enum { READ_BY_LIB = 1, READ_BY_SELECT = 2 };
static _Thread_local const unsigned char *read_by; /* valid during df_schedule_build */

/* Libraries read memory: their operands need slots. */
static int rule_library_operand(const df_graph *g, df_node_id n, const int *cons,
                                const unsigned char *m) {
  return cons[n] > 0 && (read_by[n] & READ_BY_LIB);
}
static int is_select_like(df_op op) { return op == DF_OP_CONCAT || op == DF_OP_PAD; }
/* concat and pad evaluate their operands at clamped indices for every
** element: an expensive operand would be computed many times over. */
static int rule_select_operand(const df_graph *g, df_node_id n, const int *cons,
                               const unsigned char *m) {
  return cons[n] > 0 && (read_by[n] & READ_BY_SELECT) && !cheap(g, n, m);
}
/* sink_only[n]: n is elementwise and everything downstream of it is
** elementwise of its shape, ending in outputs nothing else reads -- the
** updates of one parameter.  Those outputs share one kernel (see
** group_siblings), which computes n once in registers: no slot. */
static _Thread_local const unsigned char *sink_only;

/* A node read by several consumers is computed once, unless cheap. */
static int rule_shared(const df_graph *g, df_node_id n, const int *cons, const unsigned char *m) {
  return cons[n] > 1 && !cheap(g, n, m) && !sink_only[n];
}

const df_fusion_rule df_fusion_rules[] = {
    {"feed", rule_feed},
    {"constant_table", rule_table},
    {"kernel_root", rule_root},
    {"library_operand", rule_library_operand},
    {"select_operand", rule_select_operand},
    {"shared", rule_shared},
};
const int df_fusion_rule_count = sizeof df_fusion_rules / sizeof df_fusion_rules[0];

/* ------------------------------------------------------------ expression generation */

typedef struct cache_entry {
  df_node_id node;
  int nd;
  kir_e idx[DF_MAX_DIMS];
  kir_e e;
} cache_entry;

typedef struct gen_ctx {
  const df_graph *g;
  df_schedule *s;
  kir_kernel *k;
  df_node_id root;
  int *buf_of_slot;   /* slot -> kernel buffer, -1 */
  int *slot_of_buf;
  cache_entry *cache;
  int ncache, capcache;
  unsigned char used[DF_OP_COUNT]; /* ops fused into this kernel, for its name */
  df_err *err;
} gen_ctx;

/* The kernel buffer for a slot, added on first use. */
static int slot_buf(gen_ctx *c, int slot, int role) {
  if (c->buf_of_slot[slot] < 0) {
    const df_slot *sl = &c->s->slots[slot];
    int b = kir_add_buf(c->k, sl->dtype, sl->numel, KB_GLOBAL, role);
    if (b < 0) return -1;
    c->buf_of_slot[slot] = b;
    c->slot_of_buf = realloc(c->slot_of_buf, (size_t)(b + 1) * sizeof *c->slot_of_buf);
    if (!c->slot_of_buf) {
      c->k->failed = 1;
      return -1;
    }
    c->slot_of_buf[b] = slot;
  }
  c->k->bufs[c->buf_of_slot[slot]].role |= role;
  return c->buf_of_slot[slot];
}

/* Row-major flat index of idx in shape. */
static kir_e ravel(kir_kernel *k, int nd, const int64_t *shape, const kir_e *idx) {
  kir_e f = kir_const_i(k, 0);
  for (int d = 0; d < nd; d++) f = kir_iadd(k, kir_imul(k, f, shape[d]), idx[d]);
  return f;
}

/* idx = the multi-index of flat in shape. */
static void unravel(kir_kernel *k, kir_e flat, int nd, const int64_t *shape, kir_e *idx) {
  int64_t stride = 1;
  for (int d = nd - 1; d >= 0; d--) {
    kir_e q = stride == 1 ? flat : kir_bin(k, DF_OP_DIV, flat, kir_const_i(k, stride));
    if (d == 0) {
      idx[d] = q;
    } else if (shape[d] == 1) {
      idx[d] = kir_const_i(k, 0);
    } else {
      kir_e qq = kir_bin(k, DF_OP_DIV, q, kir_const_i(k, shape[d]));
      idx[d] = kir_bin(k, DF_OP_SUB, q, kir_imul(k, qq, shape[d]));
    }
    stride *= shape[d];
  }
}

/* The index of an input broadcast to the node's shape. */
static void bidx(kir_kernel *k, const df_node *in, int nd, const kir_e *idx, kir_e *out) {
  for (int j = 0; j < in->ndim; j++) {
    int d = nd - in->ndim + j;
    out[j] = (in->shape[j] == 1) ? kir_const_i(k, 0) : idx[d];
  }
}

static kir_e clampi(kir_kernel *k, kir_e v, int64_t lo, int64_t hi) {
  return kir_bin(k, DF_OP_MIN, kir_bin(k, DF_OP_MAX, v, kir_const_i(k, lo)), kir_const_i(k, hi));
}

static kir_e gen(gen_ctx *c, df_node_id n, const kir_e *idx);

static kir_e gen_uncached(gen_ctx *c, df_node_id n, const kir_e *idx) {
  kir_kernel *k = c->k;
  const df_node *nd = df_graph_node(c->g, n);
  int slot = c->s->slot_of[n];
  if (slot >= 0 && n != c->root) {
    int b = slot_buf(c, slot, KB_IN);
    return kir_load(k, b, ravel(k, nd->ndim, nd->shape, idx));
  }
  kir_e ix[DF_MAX_DIMS], r = -1;
  const df_node *in0 = nd->ninputs > 0 ? df_graph_node(c->g, nd->inputs[0]) : NULL;
  c->used[nd->op] = 1;
  switch (nd->op) {
  case DF_OP_FILL:
    return df_dtype_is_float(nd->dtype) ? kir_const_f(k, nd->dtype, nd->attrs.fa[0])
                                        : kir_cast(k, nd->dtype, kir_const_i(k, (int64_t)nd->attrs.fa[0]));
  case DF_OP_IOTA: return kir_cast(k, nd->dtype, idx[df_axis(nd->attrs.ia[0], nd->ndim)]);
  case DF_OP_NEG: case DF_OP_EXP: case DF_OP_LOG: case DF_OP_SQRT: case DF_OP_RSQRT:
  case DF_OP_TANH: case DF_OP_ERF: case DF_OP_ABS: case DF_OP_RECIP:
    return kir_un(k, nd->op, gen(c, nd->inputs[0], idx));
  case DF_OP_GELU: { /* 0.5 x (1 + erf(x / sqrt 2)): the backends know erf */
    kir_e x = gen(c, nd->inputs[0], idx);
    kir_e e = kir_un(k, DF_OP_ERF, kir_bin(k, DF_OP_MUL, x, kir_const_f(k, nd->dtype, 0.70710678118654752440)));
    return kir_bin(k, DF_OP_MUL, kir_bin(k, DF_OP_MUL, x, kir_const_f(k, nd->dtype, 0.5)),
                   kir_bin(k, DF_OP_ADD, e, kir_const_f(k, nd->dtype, 1.0)));
  }
  case DF_OP_CAST: return kir_cast(k, nd->dtype, gen(c, nd->inputs[0], idx));
  case DF_OP_ADD: case DF_OP_SUB: case DF_OP_MUL: case DF_OP_DIV: case DF_OP_MAX:
  case DF_OP_MIN: case DF_OP_POW: case DF_OP_EQ: case DF_OP_NE: case DF_OP_LT:
  case DF_OP_LE: case DF_OP_GT: case DF_OP_GE: {
    kir_e iy[DF_MAX_DIMS];
    const df_node *in1 = df_graph_node(c->g, nd->inputs[1]);
    bidx(k, in0, nd->ndim, idx, ix);
    bidx(k, in1, nd->ndim, idx, iy);
    kir_e a = gen(c, nd->inputs[0], ix);
    kir_e b = gen(c, nd->inputs[1], iy);
    return kir_bin(k, nd->op, a, b);
  }
  case DF_OP_WHERE: {
    kir_e iy[DF_MAX_DIMS], iz[DF_MAX_DIMS];
    bidx(k, in0, nd->ndim, idx, ix);
    bidx(k, df_graph_node(c->g, nd->inputs[1]), nd->ndim, idx, iy);
    bidx(k, df_graph_node(c->g, nd->inputs[2]), nd->ndim, idx, iz);
    kir_e cond = gen(c, nd->inputs[0], ix);
    return kir_select(k, kir_bin(k, DF_OP_NE, kir_cast(k, DF_I64, cond), kir_const_i(k, 0)),
                      gen(c, nd->inputs[1], iy), gen(c, nd->inputs[2], iz));
  }
  case DF_OP_RESHAPE:
    unravel(k, ravel(k, nd->ndim, nd->shape, idx), in0->ndim, in0->shape, ix);
    return gen(c, nd->inputs[0], ix);
  case DF_OP_EXPAND:
    bidx(k, in0, nd->ndim, idx, ix);
    return gen(c, nd->inputs[0], ix);
  case DF_OP_PERMUTE:
    for (int i = 0; i < nd->ndim; i++) ix[nd->attrs.ia[i]] = idx[i];
    return gen(c, nd->inputs[0], ix);
  case DF_OP_SLICE: {
    int ax = (int)nd->attrs.ia[0];
    memcpy(ix, idx, (size_t)nd->ndim * sizeof *ix);
    ix[ax] = kir_iadd(k, kir_const_i(k, nd->attrs.ia[1]), kir_imul(k, idx[ax], nd->attrs.ia[3]));
    return gen(c, nd->inputs[0], ix);
  }
  case DF_OP_CONCAT: {
    int ax = (int)nd->attrs.ia[0];
    int64_t off = 0;
    for (int i = 0; i < nd->ninputs; i++) {
      const df_node *in = df_graph_node(c->g, nd->inputs[i]);
      int64_t len = in->shape[ax];
      if (len == 0) continue;
      memcpy(ix, idx, (size_t)nd->ndim * sizeof *ix);
      ix[ax] = clampi(k, kir_bin(k, DF_OP_SUB, idx[ax], kir_const_i(k, off)), 0, len - 1);
      kir_e v = gen(c, nd->inputs[i], ix);
      if (r < 0) r = v;
      else r = kir_select(k, kir_bin(k, DF_OP_LT, idx[ax], kir_const_i(k, off)), r, v);
      off += len;
    }
    return r;
  }
  case DF_OP_PAD: {
    int ax = (int)nd->attrs.ia[0];
    int64_t before = nd->attrs.ia[1], len = in0->shape[ax];
    if (len == 0) return kir_const_f(k, nd->dtype, 0.0);
    memcpy(ix, idx, (size_t)nd->ndim * sizeof *ix);
    kir_e rel = kir_bin(k, DF_OP_SUB, idx[ax], kir_const_i(k, before));
    ix[ax] = clampi(k, rel, 0, len - 1);
    kir_e inside = kir_bin(k, DF_OP_EQ, rel, ix[ax]);
    return kir_select(k, inside, gen(c, nd->inputs[0], ix), kir_const_f(k, nd->dtype, 0.0));
  }
  case DF_OP_GATHER: {
    int ax = (int)nd->attrs.ia[0];
    const df_node *ixn = df_graph_node(c->g, nd->inputs[1]);
    kir_e pi[DF_MAX_DIMS];
    memcpy(pi, idx, (size_t)(ax + 1) * sizeof *pi);
    kir_e p = kir_cast(k, DF_I64, gen(c, nd->inputs[1], pi));
    (void)ixn;
    for (int j = 0; j < in0->ndim; j++) ix[j] = (j < ax && in0->shape[j] == 1) ? kir_const_i(k, 0) : idx[j];
    ix[ax] = clampi(k, p, 0, in0->shape[ax] - 1); /* mask_index gives valid positions */
    return gen(c, nd->inputs[0], ix);
  }
  default:
    df_err_set(c->err, DF_EUNSUPPORTED, "%s:%d: %s: cannot be fused into a kernel", nd->file,
               nd->line, df_op_name(nd->op));
    k->failed = 1;
    return -1;
  }
}

static kir_e gen(gen_ctx *c, df_node_id n, const kir_e *idx) {
  int nd = df_graph_node(c->g, n)->ndim;
  for (int i = 0; i < c->ncache; i++) {
    cache_entry *e = &c->cache[i];
    if (e->node == n && memcmp(e->idx, idx, (size_t)nd * sizeof *idx) == 0) return e->e;
  }
  kir_e r = gen_uncached(c, n, idx);
  if (r < 0) return r;
  if (c->ncache == c->capcache) {
    int cap = c->capcache ? c->capcache * 2 : 64;
    cache_entry *ne = realloc(c->cache, (size_t)cap * sizeof *ne);
    if (!ne) return r;
    c->cache = ne;
    c->capcache = cap;
  }
  cache_entry *e = &c->cache[c->ncache++];
  e->node = n;
  e->nd = nd;
  memcpy(e->idx, idx, (size_t)nd * sizeof *idx);
  e->e = r;
  return r;
}

/* ------------------------------------------------------------ kernels */

/* The kernel's name says what it fuses: its root op first, then the other
** arithmetic it computes (layout ops are index arithmetic and left out),
** the dtype and the root's node number (names are unique in a module):
** fused_layernorm_add_mul_f32_n42. */
static void kernel_name(gen_ctx *c, int nout, char *out, size_t n) {
  const df_node *nd = df_graph_node(c->g, c->root);
  size_t off = (size_t)snprintf(out, n, "fused_%s", df_op_name(nd->op));
  for (int op = 0; op < DF_OP_COUNT && off + 24 < n; op++) {
    if (!c->used[op] || op == (int)nd->op) continue;
    if (op == DF_OP_RESHAPE || op == DF_OP_EXPAND || op == DF_OP_PERMUTE || op == DF_OP_SLICE ||
        op == DF_OP_FILL || op == DF_OP_IOTA)
      continue;
    off += (size_t)snprintf(out + off, n - off, "_%s", df_op_name((df_op)op));
  }
  if (nout > 1) off += (size_t)snprintf(out + off, n - off, "_x%d", nout);
  snprintf(out + off, n - off, "_%s_n%d", df_dtype_lname(nd->dtype), c->root);
}

/* rows x inner loops over the output, storing each member's value at each
** element.  Sibling outputs (n > 1, same shape) share the loop: every
** value is computed into a temporary before the first store, so a member
** written in place over a feed that another member reads reads it first. */
static void emit_elementwise(gen_ctx *c, const df_node_id *mem, int n, const int *outb) {
  kir_kernel *k = c->k;
  const df_node *nd = df_graph_node(c->g, mem[n - 1]);
  kir_e idx[DF_MAX_DIMS], flat;
  int t[DF_SCHED_MAX_GROUP];
  if (nd->ndim == 0) {
    kir_for(k, 1, KF_PARALLEL);
    flat = kir_const_i(k, 0);
  } else {
    int64_t inner = nd->shape[nd->ndim - 1], rows = df_shape_numel(nd->ndim - 1, nd->shape);
    int r = kir_for(k, rows, KF_PARALLEL);
    kir_e rv = kir_var(k, r);
    unravel(k, rv, nd->ndim - 1, nd->shape, idx);
    int j = kir_for(k, inner, KF_VECTOR);
    idx[nd->ndim - 1] = kir_var(k, j);
    flat = kir_iadd(k, kir_imul(k, rv, inner), idx[nd->ndim - 1]);
  }
  if (n == 1) {
    c->root = mem[0];
    kir_store(k, outb[0], flat, gen(c, mem[0], idx));
  } else {
    for (int m = 0; m < n; m++) {
      c->root = mem[m];
      t[m] = kir_decl(k, df_graph_node(c->g, mem[m])->dtype, gen(c, mem[m], idx));
    }
    for (int m = 0; m < n; m++)
      kir_store(k, outb[m], flat, kir_tmp(k, t[m], df_graph_node(c->g, mem[m])->dtype));
  }
  if (nd->ndim > 0) kir_end(k);
  kir_end(k);
}

static df_dtype acc_type(df_dtype t) { return df_dtype_is_float(t) ? DF_F64 : DF_I64; }

/* The kept dims of x under the reduced-axes bitmask (into kept[*nk]), the
** count of reduced elements, and the number of outputs. */
static int64_t reduce_split(const df_node *x, int64_t mask, int64_t *kept, int *nk, int64_t *count) {
  *nk = 0;
  *count = 1;
  for (int i = 0; i < x->ndim; i++) {
    if (mask >> i & 1) *count *= x->shape[i];
    else kept[(*nk)++] = x->shape[i];
  }
  return df_shape_numel(*nk, kept);
}

/* Open a REDUCE loop per reduced dim; full[] = x's index (kept dims from
** kidx).  Returns the number of loops opened (the caller ends them). */
static int reduce_loops(kir_kernel *k, const df_node *x, int64_t mask, const kir_e *kidx, kir_e *full) {
  int nl = 0;
  for (int i = 0, kk = 0; i < x->ndim; i++) {
    if (mask >> i & 1) {
      full[i] = kir_var(k, kir_for(k, x->shape[i], KF_REDUCE));
      nl++;
    } else {
      full[i] = kidx[kk++];
    }
  }
  return nl;
}

/* sum / mean / amax over outer dims, the innermost dim kept (a bias
** gradient: [rows, C] -> [C]): each parallel iteration owns W adjacent
** outputs with W accumulators, so every row is read contiguously, W at a
** time, instead of a column walk over the rows for each output. */
static int reduce_block_width(const df_node *x, int64_t mask, df_op op) {
  if (op == DF_OP_VAR || x->ndim < 2 || (mask >> (x->ndim - 1) & 1)) return 0;
  int64_t inner = x->shape[x->ndim - 1];
  for (int w = 16; w >= 2; w /= 2)
    if (inner % w == 0) return w;
  return 0;
}

static void emit_reduce_blocked(gen_ctx *c, const df_node *nd, int out, int W) {
  kir_kernel *k = c->k;
  df_node_id xin = nd->inputs[0];
  const df_node *x = df_graph_node(c->g, xin);
  int64_t mask = nd->attrs.ia[0], kept[DF_MAX_DIMS], count;
  int nk;
  int64_t nout = reduce_split(x, mask, kept, &nk, &count);
  df_dtype at = acc_type(x->dtype);
  int o = kir_for(k, nout / W, KF_PARALLEL);
  kir_e first = kir_imul(k, kir_var(k, o), W);
  kir_e kidx[DF_MAX_DIMS], full[DF_MAX_DIMS];
  unravel(k, first, nk, kept, kidx);
  int acc[16];
  for (int j = 0; j < W; j++)
    acc[j] = kir_decl(k, at, nd->op == DF_OP_AMAX ? kir_const_f(k, at, -INFINITY) : kir_const_f(k, at, 0.0));
  c->ncache = 0;
  int nl = reduce_loops(k, x, mask, kidx, full);
  kir_e last = full[x->ndim - 1];
  for (int j = 0; j < W; j++) {
    full[x->ndim - 1] = kir_iadd(k, last, kir_const_i(k, j));
    kir_acc(k, acc[j], nd->op == DF_OP_AMAX ? DF_OP_MAX : DF_OP_ADD, kir_cast(k, at, gen(c, xin, full)));
  }
  for (int i = 0; i < nl; i++) kir_end(k);
  for (int j = 0; j < W; j++) {
    kir_e val = kir_tmp(k, acc[j], at);
    if (nd->op == DF_OP_MEAN) val = kir_bin(k, DF_OP_DIV, val, kir_const_f(k, at, (double)count));
    kir_store(k, out, kir_iadd(k, first, kir_const_i(k, j)), kir_cast(k, nd->dtype, val));
  }
  kir_end(k);
}

/* sum / mean / amax / var: one output element per parallel iteration, the
** reduced dims as nested loops. */
static void emit_reduce(gen_ctx *c, const df_node *nd, int out) {
  const df_node *xn = df_graph_node(c->g, nd->inputs[0]);
  int W = df_dtype_is_float(xn->dtype) ? reduce_block_width(xn, nd->attrs.ia[0], nd->op) : 0;
  if (W) {
    emit_reduce_blocked(c, nd, out, W);
    return;
  }
  kir_kernel *k = c->k;
  df_node_id xin = nd->inputs[0];
  const df_node *x = df_graph_node(c->g, xin);
  int64_t mask = nd->attrs.ia[0], kept[DF_MAX_DIMS], count;
  int nk;
  int64_t nout = reduce_split(x, mask, kept, &nk, &count);
  df_dtype at = acc_type(x->dtype);
  int o = kir_for(k, nout, KF_PARALLEL);
  kir_e kidx[DF_MAX_DIMS], full[DF_MAX_DIMS];
  unravel(k, kir_var(k, o), nk, kept, kidx);
  int passes = nd->op == DF_OP_VAR ? 2 : 1, mean_t = -1, acc = -1;
  for (int pass = 0; pass < passes; pass++) {
    c->ncache = 0; /* expressions of loop variables do not outlive their loop */
    kir_e init = nd->op == DF_OP_AMAX ? kir_const_f(k, at, -INFINITY) : kir_const_f(k, at, 0.0);
    if (at == DF_I64) init = kir_const_i(k, 0);
    acc = kir_decl(k, at, init);
    int nl = reduce_loops(k, x, mask, kidx, full);
    kir_e v = kir_cast(k, at, gen(c, xin, full));
    if (pass == 1) {
      kir_e d = kir_bin(k, DF_OP_SUB, v, kir_tmp(k, mean_t, at));
      v = kir_bin(k, DF_OP_MUL, d, d);
    }
    kir_acc(k, acc, nd->op == DF_OP_AMAX ? DF_OP_MAX : DF_OP_ADD, v);
    for (int i = 0; i < nl; i++) kir_end(k);
    if (nd->op == DF_OP_VAR && pass == 0)
      mean_t = kir_decl(k, at, kir_bin(k, DF_OP_DIV, kir_tmp(k, acc, at), kir_const_f(k, at, (double)count)));
  }
  kir_e val = kir_tmp(k, acc, at);
  if (nd->op == DF_OP_MEAN) val = kir_bin(k, DF_OP_DIV, val, kir_const_f(k, at, (double)count));
  if (nd->op == DF_OP_VAR)
    val = kir_bin(k, DF_OP_DIV, val, kir_const_f(k, at, (double)(count - nd->attrs.ia[2])));
  kir_store(k, out, kir_var(k, o), kir_cast(k, nd->dtype, val));
  kir_end(k);
}

/* softmax / log_softmax over an axis, layernorm over the last dim: one row
** per parallel iteration; statistics in float64; the input recomputed
** (fused) on each pass. */
static void emit_row(gen_ctx *c, const df_node *nd, int out) {
  kir_kernel *k = c->k;
  df_node_id xin = nd->inputs[0];
  int ax = nd->op == DF_OP_LAYERNORM ? nd->ndim - 1 : df_axis(nd->attrs.ia[0], nd->ndim);
  int64_t L = nd->shape[ax], rshape[DF_MAX_DIMS];
  int nr = 0;
  for (int i = 0; i < nd->ndim; i++)
    if (i != ax) rshape[nr++] = nd->shape[i];
  int64_t rows = df_shape_numel(nr, rshape);
  df_dtype at = DF_F64;
  int r = kir_for(k, rows, KF_PARALLEL);
  kir_e ridx[DF_MAX_DIMS], full[DF_MAX_DIMS];
  unravel(k, kir_var(k, r), nr, rshape, ridx);
#define ROWIDX(v)                                            \
  do {                                                       \
    for (int i_ = 0, j_ = 0; i_ < nd->ndim; i_++)            \
      full[i_] = (i_ == ax) ? kir_var(k, v) : ridx[j_++];    \
  } while (0)
  int l;
  if (nd->op == DF_OP_LAYERNORM) {
    int s1 = kir_decl(k, at, kir_const_f(k, at, 0.0));
    l = kir_for(k, L, KF_REDUCE);
    ROWIDX(l);
    c->ncache = 0;
    kir_acc(k, s1, DF_OP_ADD, kir_cast(k, at, gen(c, xin, full)));
    kir_end(k);
    int mu = kir_decl(k, at, kir_bin(k, DF_OP_DIV, kir_tmp(k, s1, at), kir_const_f(k, at, (double)L)));
    int s2 = kir_decl(k, at, kir_const_f(k, at, 0.0));
    l = kir_for(k, L, KF_REDUCE);
    ROWIDX(l);
    c->ncache = 0;
    kir_e d = kir_bin(k, DF_OP_SUB, kir_cast(k, at, gen(c, xin, full)), kir_tmp(k, mu, at));
    kir_acc(k, s2, DF_OP_ADD, kir_bin(k, DF_OP_MUL, d, d));
    kir_end(k);
    kir_e var = kir_bin(k, DF_OP_DIV, kir_tmp(k, s2, at), kir_const_f(k, at, (double)L));
    int rs = kir_decl(k, at, kir_un(k, DF_OP_RSQRT, kir_bin(k, DF_OP_ADD, var, kir_const_f(k, at, nd->attrs.fa[0]))));
    l = kir_for(k, L, KF_VECTOR);
    ROWIDX(l);
    c->ncache = 0;
    kir_e ci[1] = {kir_var(k, l)};
    kir_e xh = kir_bin(k, DF_OP_MUL, kir_bin(k, DF_OP_SUB, kir_cast(k, at, gen(c, xin, full)), kir_tmp(k, mu, at)),
                       kir_tmp(k, rs, at));
    kir_e y = kir_bin(k, DF_OP_ADD, kir_bin(k, DF_OP_MUL, xh, kir_cast(k, at, gen(c, nd->inputs[1], ci))),
                      kir_cast(k, at, gen(c, nd->inputs[2], ci)));
    kir_store(k, out, ravel(k, nd->ndim, nd->shape, full), kir_cast(k, nd->dtype, y));
    kir_end(k);
  } else {
    /* the maximum and exp in the input's precision (float32 for narrower
    ** types: exp there is vectorised and within an ulp), the sum in
    ** float64 */
    df_dtype ct = df_graph_node(c->g, xin)->dtype == DF_F64 ? DF_F64 : DF_F32;
    int mx = kir_decl(k, ct, kir_const_f(k, ct, -INFINITY));
    l = kir_for(k, L, KF_REDUCE);
    ROWIDX(l);
    c->ncache = 0;
    kir_acc(k, mx, DF_OP_MAX, kir_cast(k, ct, gen(c, xin, full)));
    kir_end(k);
    int sum = kir_decl(k, at, kir_const_f(k, at, 0.0));
    l = kir_for(k, L, KF_REDUCE);
    ROWIDX(l);
    c->ncache = 0;
    kir_acc(k, sum, DF_OP_ADD,
            kir_cast(k, at, kir_un(k, DF_OP_EXP, kir_bin(k, DF_OP_SUB, kir_cast(k, ct, gen(c, xin, full)),
                                                        kir_tmp(k, mx, ct)))));
    kir_end(k);
    int fin = nd->op == DF_OP_SOFTMAX
                  ? kir_decl(k, ct, kir_cast(k, ct, kir_bin(k, DF_OP_DIV, kir_const_f(k, at, 1.0), kir_tmp(k, sum, at))))
                  : kir_decl(k, ct, kir_cast(k, ct, kir_un(k, DF_OP_LOG, kir_tmp(k, sum, at))));
    l = kir_for(k, L, KF_VECTOR);
    ROWIDX(l);
    c->ncache = 0;
    kir_e z = kir_bin(k, DF_OP_SUB, kir_cast(k, ct, gen(c, xin, full)), kir_tmp(k, mx, ct));
    kir_e y = nd->op == DF_OP_SOFTMAX ? kir_bin(k, DF_OP_MUL, kir_un(k, DF_OP_EXP, z), kir_tmp(k, fin, ct))
                                      : kir_bin(k, DF_OP_SUB, z, kir_tmp(k, fin, ct));
    kir_store(k, out, ravel(k, nd->ndim, nd->shape, full), kir_cast(k, nd->dtype, y));
    kir_end(k);
  }
#undef ROWIDX
  kir_end(k);
}

/* Build the kernel of slotted nodes mem[0..n-1] (one node, or sibling
** elementwise outputs of one shape) and its step. */
static int build_kernel(df_schedule *s, const df_node_id *mem, int n, df_step *st, df_err *err) {
  const df_graph *g = s->g;
  const df_node *nd = df_graph_node(g, mem[n - 1]);
  gen_ctx c;
  memset(&c, 0, sizeof c);
  c.g = g;
  c.s = s;
  c.root = mem[n - 1];
  c.err = err;
  c.k = kir_new("kernel");
  c.buf_of_slot = malloc((size_t)s->nslots * sizeof *c.buf_of_slot);
  if (!c.k || !c.buf_of_slot) {
    kir_free(c.k);
    free(c.buf_of_slot);
    return df_err_set(err, DF_ENOMEM, "out of memory");
  }
  for (int i = 0; i < s->nslots; i++) c.buf_of_slot[i] = -1;
  int outb[DF_SCHED_MAX_GROUP];
  for (int m = 0; m < n; m++) outb[m] = slot_buf(&c, s->slot_of[mem[m]], KB_OUT); /* buffers 0 .. n-1 */
  if (is_red(nd->op)) emit_reduce(&c, nd, outb[0]);
  else if (is_row(nd->op)) emit_row(&c, nd, outb[0]);
  else emit_elementwise(&c, mem, n, outb);
  c.root = mem[n - 1];
  kernel_name(&c, n, c.k->name, sizeof c.k->name);
  int rc = 0;
  if (c.k->failed) rc = err && err->code ? err->code : df_err_set(err, DF_ENOMEM, "out of memory");
  else rc = kir_verify(c.k, err);
  if (rc == 0) {
    st->kind = DF_STEP_KERNEL;
    st->node = mem[n - 1];
    st->kernel = c.k;
    st->nout = n;
    st->nslots = c.k->nbufs;
    st->slots = malloc((size_t)(c.k->nbufs ? c.k->nbufs : 1) * sizeof *st->slots);
    if (!st->slots) rc = df_err_set(err, DF_ENOMEM, "out of memory");
    else memcpy(st->slots, c.slot_of_buf, (size_t)c.k->nbufs * sizeof *st->slots);
  }
  if (rc) kir_free(c.k);
  free(c.buf_of_slot);
  free(c.slot_of_buf);
  free(c.cache);
  return rc;
}

/* The slot a library step reads for operand n: n's, or, for a reshape
** without one, the slot of what it reshapes (row-major: the same bytes). */
static int lib_operand(const df_schedule *s, df_node_id n) {
  while (s->slot_of[n] < 0 && df_graph_node(s->g, n)->op == DF_OP_RESHAPE) n = df_graph_node(s->g, n)->inputs[0];
  return s->slot_of[n];
}

/* ------------------------------------------------------------ sibling outputs */

/* Per-query marks over the graph's nodes (stamp[n] == cur: visited). */
typedef struct walk {
  const df_schedule *s;
  int *stamp, cur;
  signed char *memo;
} walk;

/* Collect the slots of root's shape that the kernel of root reads (through
** fused nodes) into out[]; returns the new count. */
static int collect_slots(walk *w, df_node_id n, const df_node *root, int top, int *out, int cnt, int cap) {
  if (w->stamp[n] == w->cur) return cnt;
  w->stamp[n] = w->cur;
  const df_node *nd = df_graph_node(w->s->g, n);
  int sl = w->s->slot_of[n];
  if (!top && sl >= 0) {
    const df_slot *x = &w->s->slots[sl];
    if ((x->kind == DF_SLOT_ARENA || x->kind == DF_SLOT_FEED) && same_shape(nd, root) && cnt < cap) out[cnt++] = sl;
    return cnt;
  }
  for (int i = 0; i < nd->ninputs; i++) cnt = collect_slots(w, nd->inputs[i], root, 0, out, cnt, cap);
  return cnt;
}

/* Does the kernel of a fused node n read node f (through fused nodes)? */
static int reaches(walk *w, df_node_id n, df_node_id f) {
  if (n == f) return 1;
  if (w->s->slot_of[n] >= 0) return 0;
  if (w->stamp[n] == w->cur) return w->memo[n];
  w->stamp[n] = w->cur;
  w->memo[n] = 0;
  const df_node *nd = df_graph_node(w->s->g, n);
  for (int i = 0; i < nd->ninputs && !w->memo[n]; i++) w->memo[n] = (signed char)reaches(w, nd->inputs[i], f);
  return w->memo[n];
}

/* How many fused ops lie between n and f at the nearest (100: none). */
static int depth_to(walk *w, df_node_id n, df_node_id f, int top) {
  if (n == f) return 0;
  if (!top && w->s->slot_of[n] >= 0) return 100;
  if (w->stamp[n] == w->cur) return w->memo[n];
  w->stamp[n] = w->cur;
  int best = 100;
  const df_node *nd = df_graph_node(w->s->g, n);
  for (int i = 0; i < nd->ninputs; i++) {
    int d = depth_to(w, nd->inputs[i], f, 0);
    if (d + 1 < best) best = d + 1;
  }
  w->memo[n] = (signed char)best;
  return best;
}

/* Does the kernel computing `root` read the feed f only at the element it
** writes (through elementwise ops of root's shape, never broadcast)? */
static int same_index_only(walk *w, df_node_id n, df_node_id f, const df_node *root, int top) {
  if (n == f) return same_shape(df_graph_node(w->s->g, n), root);
  if (!top && w->s->slot_of[n] >= 0) return 1;
  const df_node *nd = df_graph_node(w->s->g, n);
  if (!is_elementwise(nd->op) || !same_shape(nd, root)) {
    w->cur++;
    return !reaches(w, n, f);
  }
  for (int i = 0; i < nd->ninputs; i++) {
    df_node_id in = nd->inputs[i];
    if (!same_shape(df_graph_node(w->s->g, in), root)) {
      w->cur++;
      if (reaches(w, in, f)) return 0;
    } else if (!same_index_only(w, in, f, root, 0)) {
      return 0;
    }
  }
  return 1;
}

static int uf_find(int *parent, int x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

/* Outputs that nothing else reads, computed by elementwise kernels of one
** shape and reading a common slot of that shape (the updates of one
** parameter: weights, moments, compensation), become one kernel:
** group[n] = the group's representative (its last member), or -1. */
static int group_siblings(df_schedule *s, const df_node_id *outputs, int n_out, const int *cons, int *group,
                          int *gsize) {
  const df_graph *g = s->g;
  int N = df_graph_count(g);
  int *owner = malloc((size_t)(s->nslots + 1) * sizeof *owner);
  int *parent = malloc((size_t)(N + 1) * sizeof *parent);
  int *last = malloc((size_t)(N + 1) * sizeof *last);
  walk w = {s, calloc((size_t)N + 1, sizeof(int)), 0, NULL};
  int rc = -1;
  if (!owner || !parent || !last || !w.stamp) goto out;
  for (int i = 0; i < s->nslots; i++) owner[i] = -1;
  for (int i = 0; i < N; i++) parent[i] = i, group[i] = -1, gsize[i] = 0, last[i] = -1;
  for (int i = 0; i < n_out; i++) {
    df_node_id o = outputs[i];
    const df_node *nd = df_graph_node(g, o);
    int sl = s->slot_of[o];
    if (cons[o] > 0 || sl < 0 || s->slots[sl].kind != DF_SLOT_ARENA || is_red(nd->op) || is_row(nd->op) ||
        is_lib(nd->op) || group[o] == 0)
      continue;
    group[o] = 0; /* a candidate (an output listed twice is seen once) */
    gsize[o] = 1;
    int reads[64];
    w.cur++;
    int nr = collect_slots(&w, o, nd, 1, reads, 0, 64);
    for (int r = 0; r < nr; r++) {
      if (owner[reads[r]] < 0) {
        owner[reads[r]] = o;
        continue;
      }
      int a = uf_find(parent, o), b = uf_find(parent, owner[reads[r]]);
      if (a != b && same_shape(df_graph_node(g, a), df_graph_node(g, b)) &&
          gsize[a] + gsize[b] <= DF_SCHED_MAX_GROUP) {
        parent[a] = b;
        gsize[b] += gsize[a];
      }
    }
  }
  /* the representative is the last member: the group's kernel runs there */
  for (int i = 0; i < N; i++)
    if (group[i] == 0) last[uf_find(parent, i)] = i;
  for (int i = 0; i < N; i++)
    if (group[i] == 0) {
      int r = uf_find(parent, i);
      group[i] = gsize[r] > 1 ? last[r] : -1;
    }
  rc = 0;
out:
  free(owner), free(parent), free(last), free(w.stamp);
  return rc;
}

/* The last step that can stop a run on its input (mask_index rejects a
** mask), or -1.  (Host library steps can also run out of memory.) */
static int last_fallible(const df_schedule *s) {
  int last = -1;
  for (int i = 0; i < s->nsteps; i++)
    if (s->steps[i].kind == DF_STEP_LIB && df_graph_node(s->g, s->steps[i].node)->op == DF_OP_MASK_INDEX) last = i;
  return last;
}

/* Compute outputs in place into the feeds they update where that is safe
** (see df_schedule.out_alias): the feed's buffer replaces the output's in
** the kernel, and the output's slot is given up. */
static int alias_outputs(df_schedule *s, const df_node_id *outputs, int n_out) {
  const df_graph *g = s->g;
  int N = df_graph_count(g);
  walk w = {s, calloc((size_t)N + 1, sizeof(int)), 0, calloc((size_t)N + 1, 1)};
  unsigned char *taken = calloc((size_t)s->nslots + 1, 1);
  if (!w.stamp || !w.memo || !taken) {
    free(w.stamp), free(w.memo), free(taken);
    return -1;
  }
  int last_lib = last_fallible(s);
  for (int i = 0; i < n_out; i++) {
    df_node_id o = outputs[i];
    int so = s->out_slots[i], twice = 0;
    for (int j = 0; j < n_out; j++) twice += j != i && outputs[j] == o;
    if (twice || so < 0 || s->slots[so].kind != DF_SLOT_ARENA) continue;
    int si = s->slots[so].first;
    df_step *st = si >= 0 ? &s->steps[si] : NULL;
    if (!st || st->kind != DF_STEP_KERNEL || si <= last_lib) continue;
    const df_node *nd = df_graph_node(g, o);
    if (is_red(nd->op) || is_row(nd->op)) continue;
    int jo = -1;
    for (int j = 0; j < st->nout; j++)
      if (st->slots[j] == so) jo = j;
    if (jo < 0) continue;
    /* the feed it updates: of those it could overwrite, the nearest to
    ** its root (p' = where(ok, p - u, p) is p's, not the moment's) */
    int best = -1, best_d = 100;
    for (int b = st->nout; b < st->nslots; b++) {
      int f = st->slots[b];
      df_slot *fs = &s->slots[f];
      if (fs->kind != DF_SLOT_FEED || taken[f] || fs->dtype != nd->dtype || fs->last != si ||
          !same_shape(df_graph_node(g, fs->node), nd))
        continue;
      int also_out = 0; /* the feed itself is an output: it must keep its value */
      for (int j = 0; j < n_out; j++) also_out |= s->out_slots[j] == f;
      if (also_out) continue;
      int ok = 1;
      for (int m = 0; m < st->nout && ok; m++)
        ok = same_index_only(&w, s->slots[st->slots[m]].node, fs->node, df_graph_node(g, s->slots[st->slots[m]].node), 1);
      if (!ok) continue;
      w.cur++;
      int d = depth_to(&w, o, fs->node, 1);
      if (d < best_d) best = b, best_d = d;
    }
    if (best < 0) continue;
    int f = st->slots[best];
    kir_merge_buf(st->kernel, best, jo);
    memmove(&st->slots[best], &st->slots[best + 1], (size_t)(st->nslots - best - 1) * sizeof *st->slots);
    st->nslots--;
    st->slots[jo] = f;
    for (int t = si + 1; t < s->nsteps; t++) /* later readers of the output read the feed's slot */
      for (int q = 0; q < s->steps[t].nslots; q++)
        if (s->steps[t].slots[q] == so) s->steps[t].slots[q] = f;
    s->slots[so].kind = DF_SLOT_UNUSED;
    s->slot_of[o] = f;
    s->out_slots[i] = f;
    s->out_alias[i] = 1;
    s->slots[f].last = s->nsteps;
    taken[f] = 1;
  }
  free(w.stamp), free(w.memo), free(taken);
  return 0;
}

/* Move each step whose outputs nothing reads (a parameter's update), or
** that writes a few scalars (a learning rate times its group's scale), to
** just after the last step it must follow: the writers of what it reads,
** the other readers of the feeds it overwrites, the last fallible step.
** A gradient then dies as soon as its update has run, instead of every
** gradient living to the end of the step. */
typedef struct { double key; int idx; } step_key;

static int cmp_step_key(const void *a, const void *b) {
  const step_key *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->idx - y->idx;
}

static void set_liveness(df_schedule *s) {
  for (int i = 0; i < s->nslots; i++) s->slots[i].first = s->slots[i].last = -1;
  for (int t = 0; t < s->nsteps; t++)
    for (int k = 0; k < s->steps[t].nslots; k++) {
      df_slot *x = &s->slots[s->steps[t].slots[k]];
      if (x->first < 0) x->first = t;
      x->last = t;
    }
  for (int i = 0; i < s->n_out; i++) s->slots[s->out_slots[i]].last = s->nsteps; /* kept to the end */
}

static int hoist_updates(df_schedule *s, const unsigned char *pure) {
  int ns = s->nsteps, nsl = s->nslots;
  int *writer = malloc((size_t)(nsl + 1) * sizeof *writer);
  double *seen = malloc((size_t)(nsl + 1) * sizeof *seen); /* the largest key of a step so far touching a slot */
  step_key *keys = malloc((size_t)(ns + 1) * sizeof *keys);
  df_step *sorted = malloc((size_t)(ns + 1) * sizeof *sorted);
  if (!writer || !seen || !keys || !sorted) {
    free(writer), free(seen), free(keys), free(sorted);
    return -1;
  }
  for (int i = 0; i < nsl; i++) writer[i] = -1, seen[i] = -1;
  for (int t = 0; t < ns; t++) {
    const df_step *st = &s->steps[t];
    for (int j = 0; j < st->nout; j++)
      if (writer[df_step_out_slot(st, j)] < 0) writer[df_step_out_slot(st, j)] = t;
  }
  int fence = last_fallible(s);
  /* keys in step order: every step before t has its final key (ties keep
  ** the original order).  A step after t is never a constraint on moving
  ** t earlier: it stays after t. */
  for (int t = 0; t < ns; t++) {
    const df_step *st = &s->steps[t];
    keys[t].key = t;
    keys[t].idx = t;
    int movable = st->kind == DF_STEP_KERNEL, small = movable;
    int64_t out_elems = 0;
    for (int j = 0; j < st->nout && movable; j++) {
      const df_slot *o = &s->slots[st->slots[j]];
      movable = pure[o->node] || o->kind == DF_SLOT_FEED;
      out_elems += o->numel;
    }
    small = small && out_elems <= 64;
    if (movable || small) {
      double e = -1;
      int in_place = 0;
      for (int k = 0; k < st->nslots; k++) {
        int q = st->slots[k];
        if (k < st->nout) {
          if (s->slots[q].kind == DF_SLOT_FEED) { /* overwritten in place: after every earlier reader */
            in_place = 1;
            if (seen[q] > e) e = seen[q];
          }
        } else if (writer[q] >= 0 && writer[q] < t && keys[writer[q]].key > e) {
          e = keys[writer[q]].key;
        }
      }
      if (in_place && fence >= 0 && fence < t && keys[fence].key > e) e = keys[fence].key;
      if (e + 0.5 < t) keys[t].key = e + 0.5;
    }
    for (int k = 0; k < st->nslots; k++)
      if (keys[t].key > seen[st->slots[k]]) seen[st->slots[k]] = keys[t].key;
  }
  qsort(keys, (size_t)ns, sizeof *keys, cmp_step_key);
  for (int t = 0; t < ns; t++) sorted[t] = s->steps[keys[t].idx];
  memcpy(s->steps, sorted, (size_t)ns * sizeof *sorted);
  set_liveness(s);
  free(writer), free(seen), free(keys), free(sorted);
  return 0;
}

/* ------------------------------------------------------------ memory plan */

/* First-fit placement of arena slots by their [first, last] step
** intervals; 64-byte aligned. */
static void plan_memory(df_schedule *s) {
  typedef struct { size_t off, size; int last; } live_t;
  live_t *live = malloc((size_t)(s->nslots + 1) * sizeof *live);
  int nlive = 0;
  size_t peak = 0;
  int *order = malloc((size_t)(s->nslots + 1) * sizeof *order);
  int n = 0;
  if (!live || !order) {
    /* no plan: every slot gets its own place */
    size_t off = 0;
    for (int i = 0; i < s->nslots; i++)
      if (s->slots[i].kind == DF_SLOT_ARENA) {
        s->slots[i].offset = off;
        off += ((size_t)s->slots[i].numel * df_dtype_size(s->slots[i].dtype) + 63) & ~(size_t)63;
      }
    s->arena_bytes = off;
    free(live);
    free(order);
    return;
  }
  for (int i = 0; i < s->nslots; i++)
    if (s->slots[i].kind == DF_SLOT_ARENA) order[n++] = i;
  /* by the step that writes them first (steps may have moved) */
  step_key *by_first = malloc((size_t)(n + 1) * sizeof *by_first);
  if (by_first) {
    for (int i = 0; i < n; i++) by_first[i].key = s->slots[order[i]].first, by_first[i].idx = order[i];
    qsort(by_first, (size_t)n, sizeof *by_first, cmp_step_key);
    for (int i = 0; i < n; i++) order[i] = by_first[i].idx;
    free(by_first);
  }
  for (int oi = 0; oi < n; oi++) {
    df_slot *sl = &s->slots[order[oi]];
    size_t size = ((size_t)sl->numel * df_dtype_size(sl->dtype) + 63) & ~(size_t)63;
    if (size == 0) size = 64;
    int w = 0;
    for (int i = 0; i < nlive; i++)
      if (live[i].last >= sl->first) live[w++] = live[i];
    nlive = w;
    /* sort live by offset (insertion) and find the first gap */
    for (int i = 1; i < nlive; i++)
      for (int j = i; j > 0 && live[j - 1].off > live[j].off; j--) {
        live_t t = live[j];
        live[j] = live[j - 1];
        live[j - 1] = t;
      }
    size_t off = 0;
    for (int i = 0; i < nlive; i++) {
      if (live[i].off >= off + size) break;
      if (live[i].off + live[i].size > off) off = live[i].off + live[i].size;
    }
    sl->offset = off;
    live[nlive].off = off;
    live[nlive].size = size;
    live[nlive].last = sl->last;
    nlive++;
    if (off + size > peak) peak = off + size;
  }
  s->arena_bytes = peak;
  free(live);
  free(order);
}

/* ------------------------------------------------------------ build */

void df_schedule_free(df_schedule *s) {
  if (!s) return;
  for (int i = 0; i < s->nsteps; i++) {
    kir_free(s->steps[i].kernel);
    free(s->steps[i].slots);
  }
  for (int i = 0; i < s->nslots; i++) free(s->slots[i].data);
  free(s->steps);
  free(s->slots);
  free(s->slot_of);
  free(s->reason);
  free(s->out_slots);
  free(s->out_alias);
  free(s);
}

const char *df_schedule_reason(const df_schedule *s, df_node_id n) { return s->reason[n]; }

/* Compute a constant node on the host with its reference kernel. */
static int fold_constant(const df_node *nd, df_slot *sl, df_err *err) {
  int64_t n = df_shape_numel(nd->ndim, nd->shape);
  double *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
  sl->data = malloc((size_t)(n ? n : 1) * df_dtype_size(nd->dtype));
  if (!tmp || !sl->data) {
    free(tmp);
    return df_err_set(err, DF_ENOMEM, "out of memory");
  }
  int rc = df_op_info(nd->op)->ref(nd, NULL, NULL, tmp, err);
  if (rc == 0) df_dtype_convert(nd->dtype, sl->data, DF_F64, tmp, (size_t)n);
  free(tmp);
  return rc;
}

df_schedule *df_schedule_build(const df_graph *g, const df_node_id *outputs, int n_out,
                               df_err *err) {
  int N = df_graph_count(g);
  df_schedule *s = calloc(1, sizeof *s);
  unsigned char *live = malloc((size_t)N + 1), *mat = calloc((size_t)N + 1, 1);
  int *cons = calloc((size_t)N + 1, sizeof *cons);
  int *group = NULL, *gsize = NULL;
  if (s) {
    s->g = g;
    s->slot_of = malloc((size_t)(N + 1) * sizeof *s->slot_of);
    s->reason = calloc((size_t)N + 1, sizeof *s->reason);
    s->out_slots = malloc((size_t)(n_out + 1) * sizeof *s->out_slots);
    s->out_alias = calloc((size_t)n_out + 1, 1);
    s->slots = malloc((size_t)(N + 1) * sizeof *s->slots);
    s->steps = calloc((size_t)N + 1, sizeof *s->steps);
  }
  if (!s || !live || !mat || !cons || !s->slot_of || !s->reason || !s->out_slots || !s->out_alias || !s->slots ||
      !s->steps) {
    df_err_set(err, DF_ENOMEM, "schedule: out of memory");
    goto fail;
  }
  df_graph_live(g, outputs, n_out, live);
  unsigned char *rb = calloc((size_t)N + 1, 1);
  if (!rb) {
    df_err_set(err, DF_ENOMEM, "schedule: out of memory");
    goto fail;
  }
  for (int i = 0; i < N; i++) {
    s->slot_of[i] = -1;
    if (!live[i]) continue;
    const df_node *nd = df_graph_node(g, i);
    unsigned char flag = is_lib(nd->op) ? READ_BY_LIB : is_select_like(nd->op) ? READ_BY_SELECT : 0;
    for (int k = 0; k < nd->ninputs; k++) {
      cons[nd->inputs[k]]++;
      /* a library reads a reshape in the memory of what it reshapes:
      ** that gets the slot, the reshape costs no copy (see lib_operand) */
      df_node_id x = nd->inputs[k];
      while (flag == READ_BY_LIB && df_graph_node(g, x)->op == DF_OP_RESHAPE) x = df_graph_node(g, x)->inputs[0];
      rb[x] |= flag;
    }
  }
  read_by = rb;
  /* sink_only, from the last node back (consumers have larger ids) */
  unsigned char *so = calloc((size_t)N + 1, 1), *is_out = calloc((size_t)N + 1, 1);
  if (!so || !is_out) {
    free(so), free(is_out), free(rb);
    df_err_set(err, DF_ENOMEM, "schedule: out of memory");
    goto fail;
  }
  for (int i = 0; i < n_out; i++) is_out[outputs[i]] = 1;
  for (int i = 0; i < N; i++) so[i] = live[i] && is_elementwise(df_graph_node(g, i)->op);
  for (int i = N - 1; i >= 0; i--) {
    if (!live[i]) continue;
    const df_node *nd = df_graph_node(g, i);
    int ok = so[i] && (is_out[i] ? cons[i] == 0 : cons[i] > 0);
    if (!ok) {
      for (int k = 0; k < nd->ninputs; k++) so[nd->inputs[k]] = 0;
      so[i] = 0;
      continue;
    }
    for (int k = 0; k < nd->ninputs; k++)
      if (!same_shape(df_graph_node(g, nd->inputs[k]), nd)) so[nd->inputs[k]] = 0;
  }
  free(is_out);
  sink_only = so;
  for (int i = 0; i < n_out; i++) {
    mat[outputs[i]] = 1;
    s->reason[outputs[i]] = "output";
  }
  /* the rules, to a fixed point */
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < N; i++) {
      if (!live[i] || mat[i]) continue;
      for (int r = 0; r < df_fusion_rule_count; r++)
        if (df_fusion_rules[r].applies(g, i, cons, mat)) {
          mat[i] = 1;
          s->reason[i] = df_fusion_rules[r].name;
          changed = 1;
          break;
        }
    }
  }
  read_by = NULL;
  free(rb);
  sink_only = NULL;
  free(so);
  /* slots */
  for (int i = 0; i < N; i++) {
    if (!live[i]) continue;
    if (!mat[i]) {
      s->n_fused++;
      continue;
    }
    const df_node *nd = df_graph_node(g, i);
    df_slot *sl = &s->slots[s->nslots];
    memset(sl, 0, sizeof *sl);
    sl->node = i;
    sl->dtype = nd->dtype;
    sl->numel = df_shape_numel(nd->ndim, nd->shape);
    sl->first = sl->last = -1;
    if (is_feed(nd->op)) {
      sl->kind = DF_SLOT_FEED;
    } else if (nd->op == DF_OP_SINUSOID || nd->op == DF_OP_FILL || nd->op == DF_OP_IOTA) {
      sl->kind = DF_SLOT_CONST;
      if (fold_constant(nd, sl, err)) goto fail_slots;
    } else {
      sl->kind = DF_SLOT_ARENA;
    }
    s->slot_of[i] = s->nslots++;
  }
  /* sibling outputs computed together */
  group = malloc((size_t)(N + 1) * sizeof *group);
  gsize = malloc((size_t)(N + 1) * sizeof *gsize);
  if (!group || !gsize || group_siblings(s, outputs, n_out, cons, group, gsize)) {
    df_err_set(err, DF_ENOMEM, "schedule: out of memory");
    goto fail_slots;
  }
  /* steps, in node order (a group at its last member) */
  for (int i = 0; i < N; i++) {
    int sl = s->slot_of[i];
    if (sl < 0 || s->slots[sl].kind != DF_SLOT_ARENA) continue;
    if (group[i] >= 0 && group[i] != i) continue;
    const df_node *nd = df_graph_node(g, i);
    df_step *st = &s->steps[s->nsteps];
    if (is_lib(nd->op)) {
      st->kind = nd->op == DF_OP_MATMUL ? DF_STEP_MATMUL : DF_STEP_LIB;
      st->node = i;
      st->nout = 1;
      st->nslots = nd->ninputs + 1;
      st->slots = malloc((size_t)st->nslots * sizeof *st->slots);
      if (!st->slots) {
        df_err_set(err, DF_ENOMEM, "schedule: out of memory");
        goto fail_slots;
      }
      for (int k = 0; k < nd->ninputs; k++) st->slots[k] = lib_operand(s, nd->inputs[k]);
      st->slots[nd->ninputs] = sl;
    } else {
      df_node_id mem[DF_SCHED_MAX_GROUP];
      int n = 0;
      if (group[i] == i) {
        for (int j = 0; j <= i && n < DF_SCHED_MAX_GROUP; j++)
          if (group[j] == i) mem[n++] = j;
      } else {
        mem[n++] = i;
      }
      if (build_kernel(s, mem, n, st, err)) goto fail_slots;
    }
    s->nsteps++;
    /* liveness: this step writes its last slot and reads the others */
    int idx = s->nsteps - 1;
    for (int k = 0; k < st->nslots; k++) {
      df_slot *x = &s->slots[st->slots[k]];
      if (x->first < 0) x->first = idx;
      x->last = idx;
    }
  }
  for (int i = 0; i < n_out; i++) {
    s->out_slots[i] = s->slot_of[outputs[i]];
    s->slots[s->out_slots[i]].last = s->nsteps; /* kept to the end */
  }
  s->n_out = n_out;
  for (int i = 0; i < N; i++) live[i] = 0; /* reused: the outputs nothing reads */
  for (int i = 0; i < n_out; i++) live[outputs[i]] = cons[outputs[i]] == 0;
  if (alias_outputs(s, outputs, n_out) || hoist_updates(s, live)) {
    df_err_set(err, DF_ENOMEM, "schedule: out of memory");
    goto fail_slots;
  }
  plan_memory(s);
  free(live);
  free(mat);
  free(cons);
  free(group);
  free(gsize);
  return s;

fail_slots:
fail:
  free(live);
  free(mat);
  free(cons);
  free(group);
  free(gsize);
  df_schedule_free(s);
  return NULL;
}

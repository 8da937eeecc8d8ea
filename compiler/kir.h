/*
** kir.h -- the Kernel IR: one fused kernel as loop nests over buffers.
**
** Backends share it: fusion and scheduling decide it once; the LLVM code
** generator (and later the CUDA one) only print it.  Nothing in it is
** CPU-specific.
**
** A kernel has numbered buffer parameters (dtype, element count, role),
** an expression pool and a flat statement list where FOR ... END bracket
** loop bodies:
**   FOR v < extent [flags]      loop variable v (0-based), extent a constant
**   DECL t : dtype = e          a scalar temporary (registers / locals)
**   SET t = e                   assign
**   ACC t op= e                 t = t op e, op add or max (reductions)
**   STORE buf[idx] = e
**   END
** Expressions are a DAG in the pool: constants, loop variables,
** temporaries, loads buf[idx], unary / binary ops (the op table's codes:
** DF_OP_ADD, DF_OP_EXP, ...; integer DIV truncates), SELECT(c, a, b),
** CAST.  Index expressions are i64.
** Loop flags: PARALLEL (the outermost loop only: its range is split
** among threads; a GPU maps it to blocks), VECTOR (the innermost,
** contiguous loop: SIMD lanes / threads of a block), REDUCE (a reduction
** loop; its accumulators are DECLed just before it), SCALAR (neither
** vectorised nor unrolled: a copy whose stores are strided).
** Memory scopes: a buffer is GLOBAL (a tensor of the plan) or SCRATCH (per
** parallel iteration: shared memory on a GPU, a stack array on a CPU).
**   TILE_DOT tile                C tile (+)= A panel . B panel (below)
** TILE_DOT is the tile-level product of a generated GEMM (compiler/gemm.c;
** SIMD register tiles on a CPU, tensor-core fragments on a GPU):
**   for i < mr, j < nr:
**     C[c + i*c_m + j] = (acc ? C[c + i*c_m + j] : 0)
**                        + sum_{p < depth} A[a + i*a_m + p*a_k] * B[b + p*b_k + j]
** where a, b, c and acc are expressions (acc a bool: accumulate into C),
** the rest constants, and only the columns j < n_valid (an expression,
** at most nr) of C are read or written.  The sum runs in the order p.
** Kind KT_BF16_PAIRS (AVX512-BF16 dot products): A and B are bfloat16
** and each step p takes a pair of depths, A's pair at a + i*a_m + p*a_k
** (2 adjacent elements) and B's at b + p*b_k + 2j:
**     sum_p A[.]*B[.] + A[. + 1]*B[. + 1]   (products in float32).
** SCRATCH buffers are not passed in: the kernel allocates them (per call
** of its range on a CPU), so the runtime gives only the GLOBAL ones, which
** come first.
*/
#ifndef DF_KIR_H
#define DF_KIR_H

#include <stdint.h>
#include <stdio.h>

#include "compiler/dtype.h"
#include "compiler/err.h"
#include "ops/ops.h"

typedef int32_t kir_e; /* expression id; -1 = none */

typedef enum { KE_CONST, KE_VAR, KE_TMP, KE_LOAD, KE_UN, KE_BIN, KE_SELECT, KE_CAST } kir_ekind;

typedef struct kir_expr {
  kir_ekind kind;
  df_dtype dtype;
  int op;           /* KE_UN / KE_BIN: a df_op code */
  int32_t a, b, c;  /* operands; KE_LOAD: a = buffer, b = index; KE_VAR/KE_TMP: a = number */
  double f;         /* KE_CONST (float dtypes) */
  int64_t i;        /* KE_CONST (integer dtypes) */
} kir_expr;

typedef enum { KS_FOR, KS_END, KS_DECL, KS_SET, KS_ACC, KS_STORE, KS_TILE_DOT } kir_skind;

enum { KF_PARALLEL = 1u << 0, KF_VECTOR = 1u << 1, KF_REDUCE = 1u << 2, KF_SCALAR = 1u << 3 };
enum { KB_GLOBAL = 0, KB_SCRATCH = 1 };
enum { KB_IN = 1, KB_OUT = 2 };

typedef struct kir_stmt {
  kir_skind kind;
  int32_t var;       /* FOR: loop variable; DECL/SET/ACC: temporary */
  int64_t extent;    /* FOR */
  unsigned flags;    /* FOR */
  int op;            /* ACC: DF_OP_ADD or DF_OP_MAX */
  df_dtype dtype;    /* DECL */
  int32_t buf;       /* STORE */
  kir_e idx, val;    /* STORE: index and value; DECL/SET/ACC: value */
} kir_stmt;

/* A TILE_DOT's operands (see the head comment). */
enum { KT_F32 = 0, KT_BF16_PAIRS = 1 };

typedef struct kir_tile {
  int32_t a_buf, b_buf, c_buf;
  kir_e a, b, c, acc, n_valid; /* i64 offsets; acc bool; n_valid i64 */
  int64_t mr, nr, depth;
  int64_t a_m, a_k, b_k, c_m;
  int kind;                    /* KT_F32 or KT_BF16_PAIRS */
} kir_tile;

typedef struct kir_buf {
  df_dtype dtype;
  int64_t numel;
  int scope;         /* KB_GLOBAL / KB_SCRATCH */
  int role;          /* KB_IN | KB_OUT bits */
} kir_buf;

typedef struct kir_kernel {
  char name[96];     /* says what it fuses: fused_layernorm_gelu_f32 */
  int nbufs, cap_bufs;
  kir_buf *bufs;
  int nexprs, cap_exprs;
  kir_expr *exprs;
  int nstmts, cap_stmts;
  kir_stmt *stmts;
  int ntiles, cap_tiles;  /* TILE_DOT operands: a statement's var is its tile */
  kir_tile *tiles;
  int nvars, ntmps;
  int64_t parallel_extent; /* extent of the outermost PARALLEL loop (1 if none) */
  int failed;              /* sticky out-of-memory */
} kir_kernel;

kir_kernel *kir_new(const char *name);
void kir_free(kir_kernel *k);
/* Add a buffer parameter; returns its number. */
int kir_add_buf(kir_kernel *k, df_dtype dt, int64_t numel, int scope, int role);

/* Expressions (return -1 once the kernel has failed). */
kir_e kir_const_f(kir_kernel *k, df_dtype dt, double v);
kir_e kir_const_i(kir_kernel *k, int64_t v);
kir_e kir_var(kir_kernel *k, int var);
kir_e kir_tmp(kir_kernel *k, int tmp, df_dtype dt);
kir_e kir_load(kir_kernel *k, int buf, kir_e idx);
kir_e kir_un(kir_kernel *k, int op, kir_e a);
kir_e kir_bin(kir_kernel *k, int op, kir_e a, kir_e b);
kir_e kir_select(kir_kernel *k, kir_e c, kir_e a, kir_e b);
kir_e kir_cast(kir_kernel *k, df_dtype dt, kir_e a);
/* Index helpers that fold constants: a + b, a * b. */
kir_e kir_iadd(kir_kernel *k, kir_e a, kir_e b);
kir_e kir_imul(kir_kernel *k, kir_e a, int64_t c);

/* Statements. */
int kir_for(kir_kernel *k, int64_t extent, unsigned flags); /* returns the loop variable */
void kir_end(kir_kernel *k);
int kir_decl(kir_kernel *k, df_dtype dt, kir_e init);       /* returns the temporary */
void kir_set(kir_kernel *k, int tmp, kir_e v);
void kir_acc(kir_kernel *k, int tmp, int op, kir_e v);
void kir_store(kir_kernel *k, int buf, kir_e idx, kir_e v);
void kir_tile_dot(kir_kernel *k, const kir_tile *t);

/* Make buffer `from` the same buffer as `into`: its loads and stores use
** `into` (which takes its roles), and it is removed (buffers after it are
** renumbered down by one).  For an update computed in place. */
void kir_merge_buf(kir_kernel *k, int from, int into);

/* Check the kernel's structure (brackets, ids, dtypes); 0 or an error. */
int kir_verify(const kir_kernel *k, df_err *err);
/* A stable 64-bit hash of what the kernel computes (buffers, expressions,
** statements; not its name): the cache key of its code, and its symbol. */
uint64_t kir_hash(const kir_kernel *k);
/* Write it in a readable text form. */
void kir_print(const kir_kernel *k, FILE *f);

#endif

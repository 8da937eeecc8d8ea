/*
** schedule.h -- a graph lowered for a device that runs kernels: fusion
** decisions, one Kernel IR kernel per fused group, library steps for what
** is not generated (dense products through BLAS, mask_index,
** scatter_add, rand), and a static memory plan.
**
** Slots are the tensors that exist in memory: feeds (inputs, parameters:
** bound to the caller's buffers at run time), constants (computed at
** compile time), and intermediates placed in one arena at offsets decided
** by liveness.  Every other node is fused: computed inside the kernel
** that reads it, never stored.
*/
#ifndef DF_SCHEDULE_H
#define DF_SCHEDULE_H

#include <stddef.h>

#include "compiler/graph.h"
#include "compiler/kir.h"

/* DF_SLOT_UNUSED: an output's slot given up when the output is computed
** in place into a feed's slot (see df_schedule.out_alias). */
typedef enum { DF_SLOT_ARENA, DF_SLOT_FEED, DF_SLOT_CONST, DF_SLOT_UNUSED } df_slot_kind;

typedef struct df_slot {
  df_node_id node;
  df_slot_kind kind;
  df_dtype dtype;
  int64_t numel;
  size_t offset;        /* DF_SLOT_ARENA: byte offset in the arena */
  void *data;           /* DF_SLOT_CONST: owned values */
  int first, last;      /* steps that write it first and read it last */
} df_slot;

typedef enum { DF_STEP_KERNEL, DF_STEP_MATMUL, DF_STEP_LIB } df_step_kind;

typedef struct df_step {
  df_step_kind kind;
  df_node_id node;      /* the node it computes (the kernel's root; its last output) */
  kir_kernel *kernel;   /* DF_STEP_KERNEL; owned */
  int nslots;
  int *slots;           /* kernel buffer i -> slot; MATMUL/LIB: inputs..., output */
  int nout;             /* slots it writes: KERNEL: buffers 0 .. nout-1 (several for
                        ** sibling outputs computed in one loop); MATMUL/LIB: 1, the last */
} df_step;

/* The most sibling outputs one kernel computes. */
#define DF_SCHED_MAX_GROUP 8

/* The slot of output j of a step. */
static inline int df_step_out_slot(const df_step *st, int j) {
  return st->kind == DF_STEP_KERNEL ? st->slots[j] : st->slots[st->nslots - 1];
}

typedef struct df_schedule {
  const df_graph *g;
  int nsteps;
  df_step *steps;
  int nslots;
  df_slot *slots;
  int *slot_of;         /* node -> slot or -1 (fused) */
  const char **reason;  /* node -> the fusion rule that materialized it, or NULL */
  int n_out;
  int *out_slots;
  /* out_alias[i]: output i is computed in place into the feed slot
  ** out_slots[i] (a parameter updated by a training step): its kernel runs
  ** after every other step that reads the feed's old value, reads it only
  ** at the element it writes, and no step after it checks its input
  ** (mask_index; a host library step can still run out of memory).  A run
  ** whose caller passes the feed's own tensor as outputs[i], bound to no
  ** other feed, writes it directly; otherwise the device copies the feed
  ** first and leaves the caller's feed untouched.
  ** Steps run in node order, except that a step whose outputs nothing
  ** reads (an update) or that writes a few scalars runs as early as its
  ** inputs allow. */
  unsigned char *out_alias;
  size_t arena_bytes;   /* peak of the memory plan */
  int n_fused;          /* nodes computed inside another node's kernel */
} df_schedule;

/* Fusion rule: does node `n` need its own slot?  Rules are tried in table
** order until one answers; `why` names the rule for --dump. */
typedef struct df_fusion_rule {
  const char *name;
  /* 1: materialize, 0: no opinion */
  int (*applies)(const df_graph *g, df_node_id n, const int *consumers,
                 const unsigned char *materialized);
} df_fusion_rule;

extern const df_fusion_rule df_fusion_rules[];
extern const int df_fusion_rule_count;

/* Decide the slots (a fixed point of the rules), build the kernels and the
** memory plan.  NULL with an error naming the node that could not be
** lowered. */
df_schedule *df_schedule_build(const df_graph *g, const df_node_id *outputs, int n_out,
                               df_err *err);
void df_schedule_free(df_schedule *s);

/* Which rule materialized node n (NULL when fused), for reports. */
const char *df_schedule_reason(const df_schedule *s, df_node_id n);

#endif

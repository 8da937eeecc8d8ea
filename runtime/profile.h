/*
** profile.h -- what the kernel devices (cpu, cuda) share about a run's
** steps: their names, the non-finite check of a slot's values, and the
** profile of a run.
**
** A profile is the time of each step (t[nsteps], seconds, the caller's):
** with $DFERC_PROFILE set (not "0") it prints on stderr the totals by
** step kind, the 12 slowest steps (name, shape, file:line) and the time by
** kernel family (a kernel's name without its node suffix); with
** $DFERC_PROFILE_OUT=FILE it also writes the totals and families there as
** JSON ({"steps", "seconds", "kernel_seconds", "matmul_seconds",
** "library_seconds", "families": [{"name", "seconds", "count"}]}).
*/
#ifndef DF_PROFILE_H
#define DF_PROFILE_H

#include "compiler/schedule.h"

/* Whether a run should time its steps ($DFERC_PROFILE or $DFERC_PROFILE_OUT). */
int df_profiling(void);

/* where: what the times measure ("" or " on the GPU"); kinds: the names
** of the kernel, matmul and library step kinds in the summary line. */
void df_profile_report(const df_schedule *s, const double *t, const char *where, const char *const kinds[3]);

/* A step's name: its kernel's, or its op's. */
const char *df_step_name(const df_schedule *s, int i);

/* 0, or an error naming the slot's node (file:line, op, shape) and the
** first element of data (the slot's values, on the host) that is NaN or
** infinite. */
int df_check_finite_slot(const df_schedule *s, int slot, const void *data, df_err *err);

#endif

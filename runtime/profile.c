/*
** profile.c -- see profile.h.
*/
#include "runtime/profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tensor.h"

typedef struct fam {
  char name[96];
  double t;
  int n;
} fam;

static int env_on(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

int df_profiling(void) {
  const char *o = getenv("DFERC_PROFILE_OUT");
  return env_on("DFERC_PROFILE") || (o && *o);
}

const char *df_step_name(const df_schedule *s, int i) {
  const df_step *st = &s->steps[i];
  return st->kind == DF_STEP_KERNEL ? st->kernel->name : df_op_name(df_graph_node(s->g, st->node)->op);
}

int df_check_finite_slot(const df_schedule *s, int slot, const void *data, df_err *err) {
  const df_slot *sl = &s->slots[slot];
  if (!df_dtype_is_float(sl->dtype)) return 0;
  for (int64_t i = 0; i < sl->numel; i++) {
    double v = df_dtype_get(sl->dtype, data, (size_t)i);
    if (!isfinite(v)) {
      const df_node *nd = df_graph_node(s->g, sl->node);
      char sb[160];
      return df_err_set(err, DF_ERUNTIME, "first non-finite tensor: %s:%d: %s%s%s %s holds %g at element %lld",
                        nd->file, nd->line, df_op_name(nd->op), nd->attrs.str ? " " : "",
                        nd->attrs.str ? nd->attrs.str : "", df_node_shape_str(nd, sb, sizeof sb), v,
                        (long long)i);
    }
  }
  return 0;
}

void df_profile_report(const df_schedule *s, const double *t, const char *where, const char *const kinds[3]) {
  FILE *o = env_on("DFERC_PROFILE") ? stderr : NULL;
  double total = 0, kind[3] = {0, 0, 0};
  for (int i = 0; i < s->nsteps; i++) {
    total += t[i];
    kind[s->steps[i].kind] += t[i];
  }
  if (o)
    fprintf(o, "profile: %d steps, %.3f s%s: %s %.3f s, %s %.3f s, %s %.3f s\n", s->nsteps, total, where, kinds[0],
            kind[0], kinds[1], kind[1], kinds[2], kind[2]);
  unsigned char *shown = o ? calloc((size_t)s->nsteps + 1, 1) : NULL;
  for (int r = 0; shown && r < 12; r++) {
    int best = -1;
    for (int i = 0; i < s->nsteps; i++)
      if (!shown[i] && (best < 0 || t[i] > t[best])) best = i;
    if (best < 0) break;
    shown[best] = 1;
    const df_node *nd = df_graph_node(s->g, s->steps[best].node);
    char sb[160];
    fprintf(o, "  %7.4f s  %-40s %s %s:%d\n", t[best], df_step_name(s, best), df_node_shape_str(nd, sb, sizeof sb),
            nd->file, nd->line);
  }
  free(shown);
  fam *f = calloc((size_t)s->nsteps + 1, sizeof *f);
  int nf = 0;
  for (int i = 0; f && i < s->nsteps; i++) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s", df_step_name(s, i));
    char *u = strrchr(nm, '_');
    if (u && u[1] == 'n' && u[2] >= '0' && u[2] <= '9') *u = 0;
    int j = 0;
    while (j < nf && strcmp(f[j].name, nm)) j++;
    if (j == nf) snprintf(f[nf++].name, sizeof f->name, "%s", nm);
    f[j].t += t[i];
    f[j].n++;
  }
  for (int r = 0; f && r < nf; r++) { /* sorted, slowest first */
    int best = r;
    for (int j = r + 1; j < nf; j++)
      if (f[j].t > f[best].t) best = j;
    fam tmp = f[r];
    f[r] = f[best];
    f[best] = tmp;
    if (o && r < 16) fprintf(o, "  family %7.4f s  %4d x  %s\n", f[r].t, f[r].n, f[r].name);
  }
  const char *out = getenv("DFERC_PROFILE_OUT");
  FILE *jf = out && *out && f ? fopen(out, "w") : NULL;
  if (jf) {
    fprintf(jf, "{\"steps\": %d, \"seconds\": %.6g, \"kernel_seconds\": %.6g, \"matmul_seconds\": %.6g, "
                "\"library_seconds\": %.6g, \"families\": [",
            s->nsteps, total, kind[0], kind[1], kind[2]);
    for (int r = 0; r < nf; r++)
      fprintf(jf, "%s\n  {\"name\": \"%s\", \"seconds\": %.6g, \"count\": %d}", r ? "," : "", f[r].name, f[r].t,
              f[r].n);
    fputs("]}\n", jf);
    fclose(jf);
  }
  free(f);
}

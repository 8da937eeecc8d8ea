/*
** graph.c -- see graph.h.
*/
#include "compiler/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tensor.h"

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} arena_chunk;

struct df_graph {
  df_node *nodes;
  int count, cap;
  arena_chunk *arena;
  size_t arena_bytes;
};

/* Bump allocation, 16-byte aligned; chunks of at least 64 KiB. */
static void *arena_alloc(df_graph *g, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!g->arena || g->arena->used + n > g->arena->cap) {
    size_t cap = n > 65536 ? n : 65536;
    arena_chunk *c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = g->arena;
    c->used = 0;
    c->cap = cap;
    g->arena = c;
    g->arena_bytes += cap;
  }
  void *p = g->arena->data + g->arena->used;
  g->arena->used += n;
  return p;
}

static const char *arena_strdup(df_graph *g, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = arena_alloc(g, n);
  if (p) memcpy(p, s, n);
  return p;
}

df_graph *df_graph_new(void) { return calloc(1, sizeof(df_graph)); }

void df_graph_free(df_graph *g) {
  if (!g) return;
  for (arena_chunk *c = g->arena, *nx; c; c = nx) {
    nx = c->next;
    free(c);
  }
  free(g->nodes);
  free(g);
}

int df_graph_count(const df_graph *g) { return g->count; }

const df_node *df_graph_node(const df_graph *g, df_node_id id) { return &g->nodes[id]; }

size_t df_graph_arena_bytes(const df_graph *g) { return g->arena_bytes; }

const char *df_node_shape_str(const df_node *n, char *buf, size_t bufsz) {
  return df_shape_str(buf, bufsz, n->ndim, n->shape);
}

df_node_id df_graph_add(df_graph *g, df_op op, const df_node_id *inputs, int ninputs,
                        const df_attrs *attrs, const char *file, int line, df_err *err) {
  const df_op_desc *d = df_op_info(op);
  if (!file) file = "?";
  if (!d) {
    df_err_set(err, DF_EINVAL, "%s:%d: unknown op %d", file, line, (int)op);
    return -1;
  }
  if (ninputs < d->min_inputs || ninputs > d->max_inputs) {
    df_err_set(err, DF_EINVAL, "%s:%d: %s: takes %d to %d inputs, got %d", file, line,
               d->name, d->min_inputs, d->max_inputs, ninputs);
    return -1;
  }
  const df_node *in[256];
  for (int i = 0; i < ninputs; i++) {
    if (inputs[i] < 0 || inputs[i] >= g->count) {
      df_err_set(err, DF_EINVAL, "%s:%d: %s: input %d is not a node of this graph", file,
                 line, d->name, i + 1);
      return -1;
    }
    in[i] = &g->nodes[inputs[i]];
  }
  if (g->count == g->cap) {
    int cap = g->cap ? g->cap * 2 : 256;
    df_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
    if (!nn) {
      df_err_set(err, DF_ENOMEM, "%s:%d: %s: out of memory", file, line, d->name);
      return -1;
    }
    g->nodes = nn;
    g->cap = cap;
    for (int i = 0; i < ninputs; i++) in[i] = &g->nodes[inputs[i]];
  }
  df_node n;
  memset(&n, 0, sizeof n);
  n.op = op;
  n.ninputs = ninputs;
  if (attrs) n.attrs = *attrs;
  df_err e = {0};
  if (d->shape(&n, in, &e)) {
    /* inputs' shapes help more than anything else in a shape error */
    df_err_set(err, e.code, "%s:%d: %s: %s", file, line, d->name, e.msg);
    return -1;
  }
  df_node_id *ins = ninputs ? arena_alloc(g, (size_t)ninputs * sizeof *ins) : NULL;
  const char *f = arena_strdup(g, file);
  const char *s = attrs && attrs->str ? arena_strdup(g, attrs->str) : NULL;
  if ((ninputs && !ins) || !f || (attrs && attrs->str && !s)) {
    df_err_set(err, DF_ENOMEM, "%s:%d: %s: out of memory", file, line, d->name);
    return -1;
  }
  if (ninputs) memcpy(ins, inputs, (size_t)ninputs * sizeof *ins);
  n.inputs = ins;
  n.attrs.str = s;
  n.file = f;
  n.line = line;
  g->nodes[g->count] = n;
  return g->count++;
}

df_node_id df_graph_find(const df_graph *g, df_op op, const char *name) {
  for (int i = 0; i < g->count; i++)
    if (g->nodes[i].op == op && g->nodes[i].attrs.str && strcmp(g->nodes[i].attrs.str, name) == 0)
      return i;
  return -1;
}

void df_graph_live(const df_graph *g, const df_node_id *outputs, int n, unsigned char *live) {
  memset(live, 0, (size_t)g->count);
  for (int i = 0; i < n; i++)
    if (outputs[i] >= 0 && outputs[i] < g->count) live[outputs[i]] = 1;
  for (int i = g->count - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < g->nodes[i].ninputs; k++) live[g->nodes[i].inputs[k]] = 1;
}

/* Escape a string for a DOT label. */
static void dot_str(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
}

int df_graph_write_dot(const df_graph *g, const df_node_id *outputs,
                       const char *const *output_names, int n_outputs, const char *path,
                       df_err *err) {
  unsigned char *live = malloc((size_t)g->count + 1);
  if (!live) return df_err_set(err, DF_ENOMEM, "out of memory");
  if (n_outputs > 0) df_graph_live(g, outputs, n_outputs, live);
  else memset(live, 1, (size_t)g->count);
  FILE *f = fopen(path, "w");
  if (!f) {
    free(live);
    return df_err_set(err, DF_EIO, "%s: cannot write", path);
  }
  fprintf(f, "digraph dferc {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
  for (int i = 0; i < g->count; i++) {
    if (!live[i]) continue;
    const df_node *n = &g->nodes[i];
    char sb[160];
    const char *style = n->op == DF_OP_PARAM   ? ", style=filled, fillcolor=\"#e8f0ff\""
                        : n->op == DF_OP_INPUT ? ", style=filled, fillcolor=\"#e8ffe8\""
                                               : "";
    fprintf(f, "  n%d [label=\"%s", i, df_op_name(n->op));
    if (n->attrs.str) {
      fputc(' ', f);
      dot_str(f, n->attrs.str);
    }
    fprintf(f, "\\n%s %s\\n", df_node_shape_str(n, sb, sizeof sb), df_dtype_lname(n->dtype));
    const char *base = strrchr(n->file, '/');
    dot_str(f, base ? base + 1 : n->file);
    fprintf(f, ":%d\"%s];\n", n->line, style);
    for (int k = 0; k < n->ninputs; k++) fprintf(f, "  n%d -> n%d;\n", n->inputs[k], i);
  }
  for (int i = 0; i < n_outputs; i++) {
    fprintf(f, "  out%d [shape=ellipse, label=\"", i);
    dot_str(f, output_names && output_names[i] ? output_names[i] : "out");
    fprintf(f, "\"];\n  n%d -> out%d;\n", outputs[i], i);
  }
  fprintf(f, "}\n");
  free(live);
  if (fclose(f) != 0) return df_err_set(err, DF_EIO, "%s: write failed", path);
  return 0;
}

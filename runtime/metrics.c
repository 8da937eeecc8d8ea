/*
** metrics.c -- confusion matrix, recall, UAR, WAR and weighted F1 (see
** metrics.h for the definitions and the choices for absent classes).
*/
#include "runtime/metrics.h"

#include <stdlib.h>
#include <string.h>

void df_metric_free(df_metrics *m) {
  if (!m) return;
  free(m->confusion), free(m->support), free(m->recall), free(m->f1_class);
  memset(m, 0, sizeof *m);
}

int df_metric_compute(const int64_t *labels, const int64_t *preds, int64_t n, int K, df_metrics *m,
                      df_err *err) {
  memset(m, 0, sizeof *m);
  if (K < 1 || K > DF_METRIC_MAX_CLASSES)
    return df_err_set(err, DF_EINVAL, "metrics: %d classes (1..%d)", K, DF_METRIC_MAX_CLASSES);
  if (n < 0) return df_err_set(err, DF_EINVAL, "metrics: %lld samples", (long long)n);
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= K)
      return df_err_set(err, DF_EINVAL, "metrics: label %lld of sample %lld outside [0, %d)",
                        (long long)labels[i], (long long)i + 1, K);
    if (preds[i] < 0 || preds[i] >= K)
      return df_err_set(err, DF_EINVAL, "metrics: prediction %lld of sample %lld outside [0, %d)",
                        (long long)preds[i], (long long)i + 1, K);
  }
  m->K = K, m->n = n;
  m->confusion = calloc((size_t)K * K, sizeof(int64_t));
  m->support = calloc((size_t)K, sizeof(int64_t));
  m->recall = calloc((size_t)K, sizeof(double));
  m->f1_class = calloc((size_t)K, sizeof(double));
  if (!m->confusion || !m->support || !m->recall || !m->f1_class) {
    df_metric_free(m);
    return df_err_set(err, DF_ENOMEM, "metrics: out of memory for %d classes", K);
  }
  for (int64_t i = 0; i < n; i++) m->confusion[labels[i] * K + preds[i]]++;
  int64_t trace = 0;
  int in_union = 0;
  double uar = 0, f1 = 0;
  for (int k = 0; k < K; k++) {
    int64_t tp = m->confusion[(int64_t)k * K + k], row = 0, col = 0;
    for (int j = 0; j < K; j++) row += m->confusion[(int64_t)k * K + j], col += m->confusion[(int64_t)j * K + k];
    m->support[k] = row;
    trace += tp;
    if (row) {
      m->recall[k] = (double)tp / (double)row;
      m->present++;
      uar += m->recall[k];
    }
    if (row || col) in_union++;
    int64_t denom = 2 * tp + (col - tp) + (row - tp);
    m->f1_class[k] = denom ? 2.0 * (double)tp / (double)denom : 0.0;
    f1 += (double)row * m->f1_class[k];
  }
  if (n > 0) {
    m->war = (double)trace / (double)n;
    m->f1 = f1 / (double)n;
  }
  if (m->present) m->uar = uar / m->present;
  if (in_union) m->recall_macro = uar / in_union;
  return 0;
}

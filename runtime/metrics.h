/*
** metrics.h -- classification metrics of the original's evaluation: the
** confusion matrix, per-class recall, UAR, WAR and weighted F1.
**
** confusion[t * K + p] counts samples of true class t predicted as p.
** A class is "present" when it occurs among the labels.
**   recall[k]  = confusion[k][k] / support[k]; 0 for an absent class
**                (sklearn's zero_division = 0);
**   uar        = mean of recall over the present classes (what the
**                original computes, diag / row sums, whenever that is
**                finite; sklearn's balanced_accuracy_score);
**   recall_macro = sklearn's recall_score(average='macro'): the mean over
**                the classes present in labels or predictions, so a class
**                predicted but never true adds a 0 (it equals uar whenever
**                every predicted class also occurs among the labels);
**   war        = accuracy, trace / n;
**   f1         = sklearn's f1_score(average='weighted', zero_division=0):
**                sum_k support[k] * F1[k] / n, F1[k] = 2 tp / (2 tp + fp + fn)
**                (0 when that is 0 / 0).
** With no samples every value is 0.
*/
#ifndef DF_METRICS_H
#define DF_METRICS_H

#include <stdint.h>

#include "compiler/err.h"

#define DF_METRIC_MAX_CLASSES 4096

typedef struct df_metrics {
  int K;
  int64_t n;
  int64_t *confusion; /* [K * K], owned */
  int64_t *support;   /* [K] true count per class, owned */
  double *recall;     /* [K], owned */
  double *f1_class;   /* [K], owned */
  int present;        /* number of classes among the labels */
  double uar, war, f1, recall_macro;
} df_metrics;

/* Compute every metric of n (label, prediction) pairs over K classes into
** m (which owns its arrays until df_metric_free).  A label or prediction
** outside [0, K) is an error naming the sample. */
int df_metric_compute(const int64_t *labels, const int64_t *preds, int64_t n, int K, df_metrics *m,
                      df_err *err);
void df_metric_free(df_metrics *m);

#endif

/*
** dataset.h -- annotation files: one clip per line, "PATH LABEL".
**
** The original reads its split files (train.csv, test.csv) with
** pandas.read_csv(path, header=None, delimiter=' '): no header, a clip
** path, a space, an integer class label.  df_csv_read() accepts that and
** is a little kinder, with these rules:
**   - lines end in LF or CRLF; a UTF-8 byte-order mark at the start is
**     dropped; leading and trailing spaces and tabs are dropped;
**   - blank lines and lines whose first non-blank byte is '#' are skipped;
**   - the label is the last field, after the last run of spaces, tabs or
**     commas, so "PATH LABEL", "PATH<TAB>LABEL" and "PATH,LABEL" all
**     work and a path may contain spaces; the label is a decimal integer
**     in [0, 2^31 - 1], with nothing else on the line after it;
**   - the path is kept byte for byte (no encoding is assumed); a path that
**     does not start with '/' is taken relative to the folder that holds
**     the annotation file (paths written as "data/x" in "/d/train.csv"
**     become "/d/data/x"; a file named without a folder keeps them as is);
**   - a file without any entry is an error, as it is for the original.
** Every error names the file and the line ("train.csv:3: label 'x' is not
** a non-negative integer").
*/
#ifndef DF_DATASET_H
#define DF_DATASET_H

#include <stddef.h>

#include "compiler/err.h"

typedef struct df_csv df_csv;

/* Read and check a whole annotation file; NULL with err set. */
df_csv *df_csv_read(const char *path, df_err *err);
void df_csv_free(df_csv *c);

size_t df_csv_count(const df_csv *c);
/* Entry i (0-based): the resolved clip path (owned by c), its label, and
** the line of the file it came from (1-based). */
const char *df_csv_path(const df_csv *c, size_t i);
int df_csv_label(const df_csv *c, size_t i);
int df_csv_line(const df_csv *c, size_t i);

#endif

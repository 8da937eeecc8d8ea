/*
** facegen.h -- the synthetic dynamic-expression dataset of `dferc
** make-demo-data`: procedurally drawn faces that move from neutral to one
** of seven expressions, written in the original's layout (frame folders
** plus train/val/test annotation files).
**
** A clip is a pure function of (seed, label, frames, size).  Everything
** that is not the expression -- identity, skin, hair, clothes, background,
** lighting, head pose and its motion, gaze, blinks, noise, and the onset,
** speed and intensity of the expression -- is drawn from the seed alone,
** so two clips of the same seed and different labels differ only in the
** face's shape and its motion (frame 0, before the onset, is identical).
** The label picks a target set of face-shape parameters (brows, lids,
** mouth, nose wrinkles, folds); no class has its own colours, background
** or brightness.
**
** Class ids (DF_FACEGEN_CLASSES of them), as in DFEW: 0 happy, 1 sad,
** 2 neutral, 3 angry, 4 surprise, 5 disgust, 6 fear.
*/
#ifndef DF_FACEGEN_H
#define DF_FACEGEN_H

#include <stdint.h>

#include "compiler/err.h"

#define DF_FACEGEN_CLASSES 7
#define DF_FACEGEN_VERSION 2 /* bump when the pictures change */

/* Limits of the arguments (both ends included). */
#define DF_FACEGEN_MIN_FRAMES 2
#define DF_FACEGEN_MAX_FRAMES 4096
#define DF_FACEGEN_MIN_SIZE 32
#define DF_FACEGEN_MAX_SIZE 1024
#define DF_FACEGEN_MIN_CLIPS 21 /* 3 per class: every split holds every class */
#define DF_FACEGEN_MAX_CLIPS 99999

/* The defaults of `dferc make-demo-data`. */
#define DF_FACEGEN_DEFAULT_CLIPS 700
#define DF_FACEGEN_DEFAULT_FRAMES 32
#define DF_FACEGEN_DEFAULT_SIZE 160

/* "happy", "sad", ... indexed by class id. */
extern const char *const df_facegen_class_names[DF_FACEGEN_CLASSES];

/*
** Render one clip: out holds frames * size * size * 3 bytes, RGB u8,
** frame-major then row-major ([frames, size, size, 3]).  Returns 0, or
** DF_EINVAL for a bad label, frame count or size (out untouched) and
** DF_ENOMEM.  Thread-safe; allocates one size*size*3 float scratch.
*/
int df_facegen_clip(uint64_t seed, int label, int frames, int size, uint8_t *out, df_err *err);

/* The seed and label of clip i of a dataset of seed `seed`. */
uint64_t df_facegen_clip_seed(uint64_t seed, int i);
int df_facegen_clip_label(int i);

/* Called on the calling thread as clips finish; a nonzero return stops
** the run (df_facegen_dataset then fails with "cancelled"). */
typedef int (*df_facegen_progress)(void *ud, int done, int total);

typedef struct df_facegen_info {
  int train, val, test; /* clips per split */
  int skipped;          /* 1: DIR already held this dataset; nothing written */
  int threads;          /* rendering threads used */
} df_facegen_info;

/*
** Write a dataset into dir (created, with its parents, if missing):
**   dir/clips/NNNNN/00001.jpg ...  clip NNNNN (0-based, 5 digits), JPEG q90
**   dir/train.csv, val.csv, test.csv  "clips/NNNNN LABEL" per line
**   dir/README.txt                    the classes and the layout
**   dir/manifest.json                 written last: seed and arguments
** Clip i has seed df_facegen_clip_seed(seed, i) and label i % 7.  Splits
** are whole rounds of 7 clips (one per class), about 70/10/20; a last
** partial round goes to train.  When dir/manifest.json already describes
** the same dataset (and its files are there), nothing is rendered and
** info->skipped is 1.  Otherwise the old manifest is removed first, so an
** interrupted run is never taken for a complete one.  Clips render on
** DFERC_THREADS threads (default: the CPUs); the bytes do not depend on
** it.  Every file is written to a temporary name and renamed.  Errors name
** the path.  cb and info may be NULL.
*/
int df_facegen_dataset(const char *dir, uint64_t seed, int clips, int frames, int size,
                       df_facegen_progress cb, void *ud, df_facegen_info *info, df_err *err);

#endif

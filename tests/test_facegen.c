/*
** test_facegen.c -- the synthetic expression dataset (runtime/facegen.h).
**
** Clips: the same seed gives the same bytes; every class renders; the
** label changes only the face (frame 0, before the onset, is the same
** for every class, the picture's border never changes, and the per-class
** mean colour of the same identities agrees within a level or two); the
** expressive classes move away from frame 0 more than neutral does.
** Datasets are written under a fresh folder in /tmp, removed at the end
** (KEEP=1 keeps it): split counts, every class in every split, the CSVs
** read back by the project's reader, frames decoded back with libjpeg,
** the same bytes on 1 and 2 threads, a second run that skips, and clean
** errors for bad arguments, an unwritable folder and a cancelled run.
*/
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>

#include "runtime/dataset.h"
#include "runtime/facegen.h"
#include "tests/check.h"

static char tmp[256];

enum { F = 12, S = 64 };
#define FB ((size_t)S * S * 3)

static uint8_t *render(uint64_t seed, int label, int frames, int size) {
  uint8_t *b = malloc((size_t)frames * (size_t)size * (size_t)size * 3);
  df_err e = {0};
  if (b && df_facegen_clip(seed, label, frames, size, b, &e) != 0) {
    printf("# %s\n", e.msg);
    free(b);
    return NULL;
  }
  return b;
}

/* Mean absolute difference of two n-byte buffers. */
static double mad(const uint8_t *a, const uint8_t *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
  return s / (double)n;
}

/* MAD of the 4x4 block means of two n x n RGB images (JPEG's error on
** noise and chroma edges averages out). */
static double mad_blocks(const uint8_t *a, const uint8_t *b, int n) {
  double s = 0;
  int nb = n / 4;
  for (int by = 0; by < nb; by++)
    for (int bx = 0; bx < nb; bx++)
      for (int k = 0; k < 3; k++) {
        int d = 0;
        for (int y = 0; y < 4; y++)
          for (int x = 0; x < 4; x++) {
            size_t o = ((size_t)(by * 4 + y) * (size_t)n + (size_t)(bx * 4 + x)) * 3 + (size_t)k;
            d += (int)a[o] - (int)b[o];
          }
        s += fabs(d / 16.0);
      }
  return s / (nb * nb * 3);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) b[n] = '\0';
  if (len) *len = (size_t)n;
  return b;
}

static int same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

/* Decode a JPEG into a new RGB buffer; *w, *h set. */
static uint8_t *read_jpeg(const char *path, int *w, int *h) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  struct jpeg_decompress_struct d;
  struct jpeg_error_mgr jerr;
  d.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&d);
  jpeg_stdio_src(&d, f);
  jpeg_read_header(&d, TRUE);
  d.out_color_space = JCS_RGB;
  jpeg_start_decompress(&d);
  *w = (int)d.output_width, *h = (int)d.output_height;
  uint8_t *b = malloc((size_t)*w * (size_t)*h * 3);
  while (b && d.output_scanline < d.output_height) {
    JSAMPROW row = b + (size_t)d.output_scanline * (size_t)*w * 3;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  fclose(f);
  return b;
}

static void test_determinism(void) {
  uint8_t *a = render(42, 0, F, S), *b = render(42, 0, F, S), *c = render(43, 0, F, S);
  CHECK(a && b && c);
  if (a && b && c) {
    CHECK(memcmp(a, b, F * FB) == 0);
    CHECK(mad(a, c, F * FB) > 5.0);
  }
  free(a), free(b), free(c);
}

static void test_every_label(void) {
  for (int l = 0; l < DF_FACEGEN_CLASSES; l++) {
    uint8_t *a = render(7, l, F, S);
    CHECK(a != NULL);
    free(a);
  }
  CHECK(strcmp(df_facegen_class_names[0], "happy") == 0);
  CHECK(strcmp(df_facegen_class_names[6], "fear") == 0);
  uint8_t *a = render(7, 0, 32, 160); /* the default size */
  CHECK(a != NULL);
  free(a);
}

static void test_bad_args(void) {
  uint8_t buf[4];
  df_err e = {0};
  CHECK(df_facegen_clip(1, 7, F, S, buf, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "label 7");
  df_err_clear(&e);
  CHECK(df_facegen_clip(1, -1, F, S, buf, &e) == DF_EINVAL);
  df_err_clear(&e);
  CHECK(df_facegen_clip(1, 0, 1, S, buf, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "frames 1");
  df_err_clear(&e);
  CHECK(df_facegen_clip(1, 0, F, 8, buf, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "size 8");
}

/* The label changes the face only: frame 0 (before the onset) is the same
** for every class, and so is the picture's border in every frame. */
static void test_label_changes_face_only(void) {
  for (uint64_t seed = 100; seed < 106; seed++) {
    uint8_t *n = render(seed, 2, F, S);
    for (int l = 0; l < DF_FACEGEN_CLASSES && n; l++) {
      uint8_t *a = render(seed, l, F, S);
      if (!a) {
        CHECK(a != NULL);
        break;
      }
      CHECK(memcmp(a, n, FB) == 0);
      int border_same = 1;
      for (int fi = 0; fi < F; fi++)
        for (int y = 0; y < S; y++)
          for (int x = 0; x < S; x++) {
            if (x >= 4 && x < S - 4 && y >= 4 && y < S - 4) continue;
            size_t o = (size_t)fi * FB + ((size_t)y * S + (size_t)x) * 3;
            border_same &= memcmp(a + o, n + o, 3) == 0;
          }
      CHECK(border_same);
      free(a);
    }
    free(n);
  }
}

/* Expressive classes move: against the neutral clip of the same seed the
** face differs nowhere at frame 0, a little at frame 1 (the onset lies in
** 5-30% of the clip) and clearly at its end (mean over 10 identities at
** 96 x 96). */
static void test_motion(void) {
  enum { N = 10, T = 16, Z = 96 };
  size_t fb = (size_t)Z * Z * 3;
  double q[DF_FACEGEN_CLASSES] = {0}, end[DF_FACEGEN_CLASSES] = {0};
  for (int i = 0; i < N; i++) {
    uint8_t *n = render(200 + (uint64_t)i, 2, T, Z);
    for (int l = 0; l < DF_FACEGEN_CLASSES && n; l++) {
      uint8_t *a = render(200 + (uint64_t)i, l, T, Z);
      if (!a) continue;
      q[l] += mad(a + fb, n + fb, fb) / N;
      end[l] += mad(a + (T - 1) * fb, n + (T - 1) * fb, fb) / N;
      free(a);
    }
    free(n);
  }
  printf("# difference from neutral at frame 2 / %d:", T);
  for (int l = 0; l < DF_FACEGEN_CLASSES; l++) printf(" %s %.2f/%.2f", df_facegen_class_names[l], q[l], end[l]);
  printf("\n");
  for (int l = 0; l < DF_FACEGEN_CLASSES; l++) {
    if (l == 2) continue;
    CHECK(end[l] > 0.3);
    CHECK(end[l] > 3.0 * q[l]);
  }
  CHECK(end[2] == 0.0);
}

/* No class-coloured pixels: over the same 20 identities, each class's mean
** colour (whole clip) is within 3 levels of neutral's (the face fills the
** frame, and at the apex a dropped jaw's dark opening and the teeth of a
** smile cover a few percent of it: surprise differs by about 2), and the
** frame's border (4 pixels, the left, top and right edges) is exactly the
** same. */
static void test_no_class_colour(void) {
  enum { N = 20 };
  double mean[DF_FACEGEN_CLASSES][3] = {{0}}, border[DF_FACEGEN_CLASSES][3] = {{0}};
  for (int l = 0; l < DF_FACEGEN_CLASSES; l++) {
    for (int i = 0; i < N; i++) {
      uint8_t *a = render(300 + (uint64_t)i, l, F, S);
      if (!a) {
        CHECK(a != NULL);
        return;
      }
      double s[3] = {0}, b[3] = {0};
      size_t nb = 0;
      for (int fi = 0; fi < F; fi++)
        for (int y = 0; y < S; y++)
          for (int x = 0; x < S; x++) {
            const uint8_t *p = a + (size_t)fi * FB + ((size_t)y * S + (size_t)x) * 3;
            int edge = x < 4 || x >= S - 4 || y < 4;
            for (int k = 0; k < 3; k++) {
              s[k] += p[k];
              if (edge) b[k] += p[k];
            }
            nb += edge;
          }
      for (int k = 0; k < 3; k++) {
        mean[l][k] += s[k] / ((double)F * S * S) / N;
        border[l][k] += b[k] / (double)nb / N;
      }
      free(a);
    }
  }
  double worst = 0, worst_border = 0;
  for (int l = 0; l < DF_FACEGEN_CLASSES; l++)
    for (int k = 0; k < 3; k++) {
      worst = fmax(worst, fabs(mean[l][k] - mean[2][k]));
      worst_border = fmax(worst_border, fabs(border[l][k] - border[2][k]));
    }
  printf("# largest per-class mean colour difference from neutral: %.3f (border %.3f)\n", worst, worst_border);
  CHECK(worst < 3.0);
  CHECK(worst_border == 0.0);
}

/* ---------------------------------------------------------- datasets */

static int count_lines(const char *path, int per_class[DF_FACEGEN_CLASSES]) {
  df_err e = {0};
  df_csv *c = df_csv_read(path, &e);
  if (!c) {
    printf("# %s\n", e.msg);
    return -1;
  }
  int n = (int)df_csv_count(c);
  for (int i = 0; i < n; i++) {
    int l = df_csv_label(c, (size_t)i);
    if (l >= 0 && l < DF_FACEGEN_CLASSES) per_class[l]++;
    struct stat st;
    if (stat(df_csv_path(c, (size_t)i), &st) != 0 || !S_ISDIR(st.st_mode)) n = -2;
  }
  df_csv_free(c);
  return n;
}

typedef struct prog {
  int calls, last, total, cancel_at;
} prog;

static int on_progress(void *ud, int done, int total) {
  prog *p = ud;
  CHECK(done >= p->last);
  p->calls++, p->last = done, p->total = total;
  return p->cancel_at && done >= p->cancel_at;
}

static void test_dataset(void) {
  char dir[300], path[400];
  snprintf(dir, sizeof dir, "%s/a/b", tmp); /* parents are created */
  prog p = {0};
  df_facegen_info info;
  df_err e = {0};
  int rc = df_facegen_dataset(dir, 5, 70, 6, 48, on_progress, &p, &info, &e);
  if (rc) printf("# %s\n", e.msg);
  CHECK(rc == 0);
  CHECK(info.train == 49 && info.val == 7 && info.test == 14);
  CHECK(info.skipped == 0 && info.threads >= 1);
  CHECK(p.last == 70 && p.total == 70 && p.calls >= 1);
  static const char *const names[3] = {"train.csv", "val.csv", "test.csv"};
  static const int want[3] = {49, 7, 14};
  for (int s = 0; s < 3; s++) {
    int per[DF_FACEGEN_CLASSES] = {0};
    snprintf(path, sizeof path, "%s/%s", dir, names[s]);
    CHECK(count_lines(path, per) == want[s]);
    for (int l = 0; l < DF_FACEGEN_CLASSES; l++) CHECK(per[l] == want[s] / 7);
  }
  snprintf(path, sizeof path, "%s/train.csv", dir);
  char *txt = slurp(path, NULL);
  CHECK(txt && strncmp(txt, "clips/00000 0\nclips/00001 1\n", 28) == 0);
  free(txt);
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  txt = slurp(path, NULL);
  CHECK_CONTAINS(txt, "\"seed\": 5, \"clips\": 70, \"frames\": 6, \"size\": 48");
  free(txt);
  snprintf(path, sizeof path, "%s/README.txt", dir);
  txt = slurp(path, NULL);
  CHECK_CONTAINS(txt, "4 surprise");
  free(txt);
  /* a frame decodes to the clip that df_facegen_clip renders */
  int w = 0, h = 0;
  snprintf(path, sizeof path, "%s/clips/00012/00006.jpg", dir);
  uint8_t *img = read_jpeg(path, &w, &h);
  uint8_t *ref = render(df_facegen_clip_seed(5, 12), df_facegen_clip_label(12), 6, 48);
  CHECK(img && ref && w == 48 && h == 48);
  uint8_t *other = render(df_facegen_clip_seed(5, 13), df_facegen_clip_label(13), 6, 48);
  if (img && ref && other && w == 48 && h == 48) {
    double m = mad_blocks(img, ref + 5 * (size_t)48 * 48 * 3, 48);
    double mo = mad_blocks(img, other + 5 * (size_t)48 * 48 * 3, 48);
    printf("# frame 6 of clip 12, JPEG vs render (4x4 block means): %.2f; vs clip 13: %.2f\n", m, mo);
    CHECK(m < 3.0 && m < 0.25 * mo);
  }
  free(other);
  free(img);
  free(ref);
  snprintf(path, sizeof path, "%s/clips/00069/00007.jpg", dir);
  CHECK(access(path, F_OK) != 0);

  /* the same arguments again: skipped, quickly, nothing rewritten */
  struct stat st0, st1;
  snprintf(path, sizeof path, "%s/clips/00000/00001.jpg", dir);
  stat(path, &st0);
  double t0 = now();
  p = (prog){0};
  CHECK(df_facegen_dataset(dir, 5, 70, 6, 48, on_progress, &p, &info, &e) == 0);
  CHECK(info.skipped == 1 && info.train == 49);
  CHECK(now() - t0 < 0.5);
  CHECK(p.last == 70);
  stat(path, &st1);
  CHECK(st0.st_ino == st1.st_ino && st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec);
  /* other arguments: rendered again */
  CHECK(df_facegen_dataset(dir, 6, 70, 6, 48, NULL, NULL, &info, &e) == 0);
  CHECK(info.skipped == 0);
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  txt = slurp(path, NULL);
  CHECK_CONTAINS(txt, "\"seed\": 6,");
  free(txt);
}

/* The same bytes whatever the number of threads. */
static void test_dataset_threads(void) {
  char d1[300], d2[300], a[400], b[400];
  snprintf(d1, sizeof d1, "%s/t1", tmp);
  snprintf(d2, sizeof d2, "%s/t2", tmp);
  df_err e = {0};
  df_facegen_info i1, i2;
  setenv("DFERC_THREADS", "1", 1);
  CHECK(df_facegen_dataset(d1, 9, 23, 4, 40, NULL, NULL, &i1, &e) == 0);
  setenv("DFERC_THREADS", "3", 1);
  CHECK(df_facegen_dataset(d2, 9, 23, 4, 40, NULL, NULL, &i2, &e) == 0);
  unsetenv("DFERC_THREADS");
  CHECK(i1.threads == 1 && i2.threads == 3);
  /* 23 clips: 3 rounds (1 train, 1 val, 1 test) and 2 more for train */
  CHECK(i1.train == 9 && i1.val == 7 && i1.test == 7);
  static const char *const files[] = {"train.csv", "val.csv", "test.csv", "manifest.json", "README.txt",
                                      "clips/00000/00001.jpg", "clips/00013/00004.jpg", "clips/00022/00002.jpg"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(a, sizeof a, "%s/%s", d1, files[i]);
    snprintf(b, sizeof b, "%s/%s", d2, files[i]);
    CHECK(same_file(a, b));
  }
}

static void test_dataset_errors(void) {
  char path[400];
  df_err e = {0};
  snprintf(path, sizeof path, "%s/file.txt", tmp);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/file.txt/sub", tmp);
  CHECK(df_facegen_dataset(path, 1, 21, 4, 40, NULL, NULL, NULL, &e) == DF_EIO);
  CHECK_CONTAINS(e.msg, "file.txt");
  CHECK_CONTAINS(e.msg, "Not a directory");
  df_err_clear(&e);
  CHECK(df_facegen_dataset(path, 1, 20, 4, 40, NULL, NULL, NULL, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "clips 20");
  df_err_clear(&e);
  CHECK(df_facegen_dataset(path, 1, 21, 1, 40, NULL, NULL, NULL, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "frames 1");
  df_err_clear(&e);
  CHECK(df_facegen_dataset(path, 1, 21, 4, 4000, NULL, NULL, NULL, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "size 4000");
  df_err_clear(&e);
  CHECK(df_facegen_dataset("", 1, 21, 4, 40, NULL, NULL, NULL, &e) == DF_EINVAL);
  df_err_clear(&e);
  /* a cancelled run fails and leaves no manifest */
  char dir[300];
  snprintf(dir, sizeof dir, "%s/cancel", tmp);
  prog p = {.cancel_at = 3};
  CHECK(df_facegen_dataset(dir, 1, 42, 4, 40, on_progress, &p, NULL, &e) == DF_ERUNTIME);
  CHECK_CONTAINS(e.msg, "cancelled");
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  CHECK(access(path, F_OK) != 0);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/dferc_test_facegen.%d", (int)getpid());
  mkdir(tmp, 0777);
  TEST(test_determinism);
  TEST(test_every_label);
  TEST(test_bad_args);
  TEST(test_label_changes_face_only);
  TEST(test_motion);
  TEST(test_no_class_colour);
  TEST(test_dataset);
  TEST(test_dataset_threads);
  TEST(test_dataset_errors);
  if (!getenv("KEEP")) nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  else printf("# kept %s\n", tmp);
  return check_exit();
}

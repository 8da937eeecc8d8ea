/*
** test_data.c -- the data input side: annotation files, clips (frame
** folders and videos), the frame-index rules and the background loader.
**
** Every input is made here, under a fresh folder in /tmp that is removed
** at the end (KEEP=1 keeps it for inspection): JPEG and PNG frames
** written with libjpeg and libpng, videos encoded with libavcodec, broken
** files cut from good ones.  Decoder errors must come back as messages
** naming the file, with nothing on stderr.  The sampling checks spell
** out the expected indices worked by hand from the rules in sampling.h.
** The loader tests run under a 10-second alarm(): a deadlock kills the
** program instead of hanging it.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "runtime/clip.h"
#include "runtime/dataset.h"
#include "runtime/loader.h"
#include "runtime/sampling.h"
#include "tests/check.h"

static char tmp[256];

/* ---------------------------------------------------------------- helpers */

static const char *at(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", tmp, name);
  return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len + 1);
  *n = b ? fread(b, 1, (size_t)len, f) : 0;
  fclose(f);
  return b;
}

/* Write the first `keep` bytes of src to dst (a truncated copy). */
static void truncated_copy(const char *src, const char *dst, double keep) {
  size_t n;
  unsigned char *b = read_bytes(src, &n);
  if (b) write_bytes(dst, b, (size_t)((double)n * keep));
  free(b);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

/* Send stderr to a file while broken inputs are read; stderr_end returns
** how many bytes were written to it (must be 0). */
static int stderr_saved = -1;
static void stderr_begin(void) {
  fflush(stderr);
  stderr_saved = dup(2);
  int fd = open(at("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, 2);
  close(fd);
}
static long stderr_end(void) {
  fflush(stderr);
  dup2(stderr_saved, 2);
  close(stderr_saved);
  struct stat st;
  return stat(at("stderr.txt"), &st) == 0 ? (long)st.st_size : -1;
}

/* An image w x h whose left half is colour a and right half colour b. */
static unsigned char *two_colour(int w, int h, const unsigned char a[3], const unsigned char b[3]) {
  unsigned char *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) memcpy(p + ((size_t)y * w + x) * 3, x < w / 2 ? a : b, 3);
  return p;
}

static void write_jpeg(const char *path, int w, int h, int comps, const unsigned char *px) {
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr je;
  ci.err = jpeg_std_error(&je);
  jpeg_create_compress(&ci);
  FILE *f = fopen(path, "wb");
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w;
  ci.image_height = (JDIMENSION)h;
  ci.input_components = comps;
  ci.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, 95, TRUE);
  jpeg_start_compress(&ci, TRUE);
  while (ci.next_scanline < ci.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * comps);
    jpeg_write_scanlines(&ci, &row, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  fclose(f);
}

/* A PNG of the given colour type and bit depth from raw rows (already in
** that layout); palette: n_pal RGB entries. */
static void write_png(const char *path, int w, int h, int ctype, int depth, int interlace,
                      const unsigned char *raw, const png_color *pal, int n_pal) {
  FILE *f = fopen(path, "wb");
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(p);
  png_init_io(p, f);
  png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
               interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (pal) png_set_PLTE(p, info, pal, n_pal);
  png_write_info(p, info);
  int ch = ctype == PNG_COLOR_TYPE_RGB ? 3 : ctype == PNG_COLOR_TYPE_RGBA ? 4 : 1;
  size_t rowbytes = (size_t)w * ch * (depth == 16 ? 2 : 1);
  png_bytep *rows = malloc((size_t)h * sizeof *rows);
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)(raw + (size_t)y * rowbytes);
  png_write_image(p, rows);
  png_write_end(p, NULL);
  png_destroy_write_struct(&p, &info);
  free(rows);
  fclose(f);
}

static int near(int a, int b, int tol) { return abs(a - b) <= tol; }

static const unsigned char *px(const df_tensor *t, int64_t f, int y, int x) {
  return (const unsigned char *)t->data + (((f * t->shape[1] + y) * t->shape[2]) + x) * 3;
}

/* The colour of video frame i: the top half c, the bottom half 255 - c. */
static void video_colour(int i, unsigned char c[3]) {
  c[0] = (unsigned char)(20 + 10 * i);
  c[1] = (unsigned char)(200 - 8 * i);
  c[2] = (unsigned char)(30 + (i * 37) % 200);
}

/*
** Encode `frames` frames of w x h (video_colour) with `codec` into `path`
** (the container from the extension), B-frames allowed so that decoding
** order differs from display order.  Returns 0 or -1.
*/
static int write_video(const char *path, const char *codec, int w, int h, int frames) {
  AVFormatContext *oc = NULL;
  if (avformat_alloc_output_context2(&oc, NULL, NULL, path) < 0) return -1;
  const AVCodec *enc = avcodec_find_encoder_by_name(codec);
  AVStream *st = enc ? avformat_new_stream(oc, NULL) : NULL;
  AVCodecContext *cc = st ? avcodec_alloc_context3(enc) : NULL;
  int rc = -1;
  AVFrame *fr = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  struct SwsContext *sws = NULL;
  unsigned char *rgb = malloc((size_t)w * h * 3 + 64); /* swscale reads a little past the end */
  if (!cc || !fr || !pkt || !rgb) goto done;
  cc->width = w;
  cc->height = h;
  cc->time_base = (AVRational){1, 25};
  cc->framerate = (AVRational){25, 1};
  cc->pix_fmt = strcmp(codec, "mjpeg") == 0 ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  cc->gop_size = 6;
  cc->max_b_frames = strcmp(codec, "mpeg4") == 0 ? 2 : 0;
  cc->flags |= AV_CODEC_FLAG_QSCALE;
  cc->global_quality = FF_QP2LAMBDA * 2;
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (avcodec_open2(cc, enc, NULL) < 0) goto done;
  if (avcodec_parameters_from_context(st->codecpar, cc) < 0) goto done;
  st->time_base = cc->time_base;
  if (avio_open(&oc->pb, path, AVIO_FLAG_WRITE) < 0) goto done;
  if (avformat_write_header(oc, NULL) < 0) goto done;
  fr->format = cc->pix_fmt;
  fr->width = w;
  fr->height = h;
  if (av_frame_get_buffer(fr, 0) < 0) goto done;
  sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, cc->pix_fmt, SWS_BICUBIC, NULL, NULL, NULL);
  if (!sws) goto done;
  for (int i = 0; i <= frames; i++) {
    if (i < frames) {
      unsigned char c[3], d[3];
      video_colour(i, c);
      for (int k = 0; k < 3; k++) d[k] = (unsigned char)(255 - c[k]);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) memcpy(rgb + ((size_t)y * w + x) * 3, y < h / 2 ? c : d, 3);
      av_frame_make_writable(fr);
      const uint8_t *src[1] = {rgb};
      int ls[1] = {w * 3};
      sws_scale(sws, src, ls, 0, h, fr->data, fr->linesize);
      fr->pts = i;
      fr->quality = cc->global_quality;
      if (avcodec_send_frame(cc, fr) < 0) goto done;
    } else if (avcodec_send_frame(cc, NULL) < 0) {
      goto done;
    }
    while (avcodec_receive_packet(cc, pkt) == 0) {
      if (pkt->duration == 0) pkt->duration = 1; /* else the MP4 edit list drops the last frame */
      av_packet_rescale_ts(pkt, cc->time_base, st->time_base);
      pkt->stream_index = st->index;
      if (av_interleaved_write_frame(oc, pkt) < 0) goto done;
    }
  }
  rc = av_write_trailer(oc) < 0 ? -1 : 0;
done:
  if (oc && oc->pb) avio_closep(&oc->pb);
  sws_freeContext(sws);
  free(rgb);
  av_packet_free(&pkt);
  av_frame_free(&fr);
  avcodec_free_context(&cc);
  avformat_free_context(oc);
  return rc;
}

/* ---------------------------------------------------------------- CSV */

static void test_csv_format(void) {
  mkdir(at("ann"), 0700);
  const char text[] =
      "\xEF\xBB\xBF"
      "/abs/clip/00001 3\n"
      "\n"
      "# a comment line\n"
      "rel/00002 0\r\n"
      "   \t  \r\n"
      "with space/00003\t6   \n"
      "comma/00004,5\n"
      "bytes/\xff\xfe\x80 1\n"
      "last 2"; /* no final newline */
  write_bytes(at("ann/train.csv"), text, sizeof text - 1);
  df_err e = {0};
  df_csv *c = df_csv_read(at("ann/train.csv"), &e);
  CHECK(c != NULL);
  if (!c) return;
  CHECK(df_csv_count(c) == 6);
  CHECK(strcmp(df_csv_path(c, 0), "/abs/clip/00001") == 0);
  CHECK(df_csv_label(c, 0) == 3 && df_csv_line(c, 0) == 1);
  CHECK(strcmp(df_csv_path(c, 1), at("ann/rel/00002")) == 0);
  CHECK(df_csv_label(c, 1) == 0 && df_csv_line(c, 1) == 4);
  CHECK(strcmp(df_csv_path(c, 2), at("ann/with space/00003")) == 0);
  CHECK(df_csv_label(c, 2) == 6);
  CHECK(strcmp(df_csv_path(c, 3), at("ann/comma/00004")) == 0);
  CHECK(df_csv_label(c, 3) == 5);
  CHECK(strcmp(df_csv_path(c, 4), at("ann/bytes/\xff\xfe\x80")) == 0); /* byte for byte */
  CHECK(strcmp(df_csv_path(c, 5), at("ann/last")) == 0);
  CHECK(df_csv_label(c, 5) == 2 && df_csv_line(c, 5) == 9);
  CHECK(df_csv_path(c, 6) == NULL);
  df_csv_free(c);

  /* a file named without a folder keeps relative paths as they are */
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof cwd) != NULL);
  CHECK(chdir(at("ann")) == 0);
  c = df_csv_read("train.csv", &e);
  CHECK(c && strcmp(df_csv_path(c, 1), "rel/00002") == 0);
  CHECK(c && strcmp(df_csv_path(c, 0), "/abs/clip/00001") == 0);
  df_csv_free(c);
  CHECK(chdir(cwd) == 0);
}

/* Read `text` as an annotation file; the error message, or "" if none. */
static const char *csv_error(const char *text) {
  static df_err e;
  df_err_clear(&e);
  write_bytes(at("bad.csv"), text, strlen(text));
  df_csv *c = df_csv_read(at("bad.csv"), &e);
  df_csv_free(c);
  return c ? "" : e.msg;
}

static void test_csv_errors(void) {
  char want[600];
  snprintf(want, sizeof want, "%s:2: label 'x' is not a non-negative integer", at("bad.csv"));
  CHECK_CONTAINS(csv_error("a 1\nb x\n"), want);
  snprintf(want, sizeof want, "%s:3: label '-1' is not a non-negative integer", at("bad.csv"));
  CHECK_CONTAINS(csv_error("a 1\n\nb -1\n"), want);
  snprintf(want, sizeof want, "%s:1: 'clip/00001': missing label", at("bad.csv"));
  CHECK_CONTAINS(csv_error("clip/00001\n"), want);
  CHECK_CONTAINS(csv_error("a 99999999999\n"), ":1: label '99999999999'");
  CHECK_CONTAINS(csv_error("a 2.0\n"), ":1: label '2.0'");
  CHECK_CONTAINS(csv_error("a 1 extra\n"), ":1: label 'extra'");
  CHECK_CONTAINS(csv_error(", 1\n"), ":1: ', 1': missing path");
  CHECK_CONTAINS(csv_error("# only a comment\n\n"), "bad.csv: no entries");
  CHECK_CONTAINS(csv_error(""), "bad.csv: no entries");
  write_bytes(at("nul.csv"), "a 1\nb\0c 2\n", 10);
  df_err e = {0};
  CHECK(df_csv_read(at("nul.csv"), &e) == NULL);
  CHECK_CONTAINS(e.msg, "nul.csv:2: contains a NUL byte");
  df_err_clear(&e);
  CHECK(df_csv_read(at("missing.csv"), &e) == NULL);
  CHECK_CONTAINS(e.msg, "missing.csv: cannot open: No such file or directory");
}

/* ---------------------------------------------------------------- frames */

static const unsigned char colours[5][2][3] = {
    {{250, 10, 10}, {10, 250, 10}},  {{10, 10, 250}, {250, 250, 10}},
    {{200, 100, 50}, {50, 100, 200}}, {{128, 128, 128}, {0, 0, 0}},
    {{255, 255, 255}, {60, 180, 90}}};

static void test_jpeg_folder(void) {
  /* bytewise name order: 1.jpg 10.jpg 2.jpg 9.jpg frame.JPEG */
  const char *names[5] = {"1.jpg", "10.jpg", "2.jpg", "9.jpg", "frame.JPEG"};
  const int order[5] = {0, 1, 2, 3, 4};
  mkdir(at("jpg"), 0700);
  for (int i = 0; i < 5; i++) {
    unsigned char *p = two_colour(32, 16, colours[order[i]][0], colours[order[i]][1]);
    char name[64];
    snprintf(name, sizeof name, "jpg/%s", names[i]);
    write_jpeg(at(name), 32, 16, 3, p);
    free(p);
  }
  /* ignored: other extensions, dot files, folders named like images */
  write_bytes(at("jpg/notes.txt"), "not a frame", 11);
  write_bytes(at("jpg/.hidden.jpg"), "junk", 4);
  mkdir(at("jpg/sub.jpg"), 0700);
  df_err e = {0};
  df_clip *c = df_clip_open(at("jpg"), &e);
  CHECK(c != NULL);
  if (!c) {
    printf("# %s\n", e.msg);
    return;
  }
  int w, h;
  df_clip_size(c, &w, &h);
  CHECK(df_clip_count(c) == 5 && w == 32 && h == 16 && !df_clip_is_video(c));
  int64_t idx[7] = {4, 0, 1, 2, 3, 0, 4};
  df_tensor *t = df_clip_read(c, idx, 7, &e);
  CHECK(t != NULL);
  if (t) {
    CHECK(t->dtype == DF_U8 && t->ndim == 4 && t->shape[0] == 7 && t->shape[1] == 16 &&
          t->shape[2] == 32 && t->shape[3] == 3);
    for (int f = 0; f < 7; f++)
      for (int k = 0; k < 3; k++) {
        CHECK(near(px(t, f, 8, 4)[k], colours[idx[f]][0][k], 6));  /* left half */
        CHECK(near(px(t, f, 8, 28)[k], colours[idx[f]][1][k], 6)); /* right half */
      }
    CHECK(memcmp(px(t, 1, 0, 0), px(t, 5, 0, 0), 32 * 16 * 3) == 0); /* repeats are copies */
  }
  df_tensor_unref(t);
  df_clip_close(c);

  /* a greyscale JPEG comes out as RGB with R = G = B */
  mkdir(at("grey"), 0700);
  unsigned char g[16 * 8];
  for (int i = 0; i < 16 * 8; i++) g[i] = 77;
  write_jpeg(at("grey/0001.jpg"), 16, 8, 1, g);
  c = df_clip_open(at("grey"), &e);
  int64_t zero = 0;
  t = c ? df_clip_read(c, &zero, 1, &e) : NULL;
  CHECK(t && near(px(t, 0, 3, 3)[0], 77, 2) && px(t, 0, 3, 3)[0] == px(t, 0, 3, 3)[1] &&
        px(t, 0, 3, 3)[1] == px(t, 0, 3, 3)[2]);
  df_tensor_unref(t);
  df_clip_close(c);
}

static void test_png_folder(void) {
  mkdir(at("png"), 0700);
  enum { W = 7, H = 5 };
  unsigned char rgb[H * W * 3], grey[H * W], rgba[H * W * 4], pal_idx[H * W], rgb16[H * W * 6];
  png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 99, 199}};
  for (int i = 0; i < H * W; i++) {
    for (int k = 0; k < 3; k++) rgb[i * 3 + k] = (unsigned char)(i * 7 + k * 50);
    grey[i] = (unsigned char)(i * 5);
    for (int k = 0; k < 4; k++) rgba[i * 4 + k] = (unsigned char)(i * 3 + k * 40);
    pal_idx[i] = (unsigned char)(i % 4);
    for (int k = 0; k < 3; k++) { /* big-endian 16-bit samples: high byte i + k, low byte 0xAB */
      rgb16[i * 6 + k * 2] = (unsigned char)(i + k);
      rgb16[i * 6 + k * 2 + 1] = 0xAB;
    }
  }
  write_png(at("png/a0.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 0, rgb, NULL, 0);
  write_png(at("png/a1.png"), W, H, PNG_COLOR_TYPE_GRAY, 8, 0, grey, NULL, 0);
  write_png(at("png/a2.png"), W, H, PNG_COLOR_TYPE_RGBA, 8, 0, rgba, NULL, 0);
  write_png(at("png/a3.png"), W, H, PNG_COLOR_TYPE_PALETTE, 8, 0, pal_idx, pal, 4);
  write_png(at("png/a4.PNG"), W, H, PNG_COLOR_TYPE_RGB, 16, 0, rgb16, NULL, 0);
  write_png(at("png/a5.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 1, rgb, NULL, 0); /* Adam7 */
  df_err e = {0};
  df_clip *c = df_clip_open(at("png"), &e);
  CHECK(c && df_clip_count(c) == 6);
  int64_t idx[6] = {0, 1, 2, 3, 4, 5};
  df_tensor *t = c ? df_clip_read(c, idx, 6, &e) : NULL;
  CHECK(t != NULL);
  if (t) {
    const unsigned char *d = t->data;
    size_t fb = (size_t)W * H * 3;
    int ok = 1;
    for (int i = 0; i < H * W; i++)
      for (int k = 0; k < 3; k++) {
        ok &= d[0 * fb + i * 3 + k] == rgb[i * 3 + k];
        ok &= d[1 * fb + i * 3 + k] == grey[i];
        ok &= d[2 * fb + i * 3 + k] == rgba[i * 4 + k]; /* alpha dropped */
        const unsigned char pc[3] = {pal[i % 4].red, pal[i % 4].green, pal[i % 4].blue};
        ok &= d[3 * fb + i * 3 + k] == pc[k];
        ok &= d[4 * fb + i * 3 + k] == (unsigned char)(i + k); /* high byte */
        ok &= d[5 * fb + i * 3 + k] == rgb[i * 3 + k];
      }
    CHECK(ok);
  }
  df_tensor_unref(t);
  df_clip_close(c);
}

/* A single image file is a clip of one frame. */
static void test_single_image(void) {
  unsigned char rgb[4 * 3 * 3];
  for (int i = 0; i < 36; i++) rgb[i] = (unsigned char)(i * 6);
  write_png(at("one.png"), 4, 3, PNG_COLOR_TYPE_RGB, 8, 0, rgb, NULL, 0);
  df_err e = {0};
  df_clip *c = df_clip_open(at("one.png"), &e);
  CHECK(c && df_clip_count(c) == 1 && !df_clip_is_video(c));
  int64_t idx[3] = {0, 0, 0};
  df_tensor *t = c ? df_clip_read(c, idx, 3, &e) : NULL;
  CHECK(t && t->shape[0] == 3 && memcmp((unsigned char *)t->data + 2 * 36, rgb, 36) == 0);
  df_tensor_unref(t);
  df_clip_close(c);
}

/* Open `path` and read frame `frame`; the error message ("" on success). */
static const char *clip_error(const char *path, int64_t frame) {
  static df_err e;
  df_err_clear(&e);
  df_clip *c = df_clip_open(path, &e);
  df_tensor *t = c ? df_clip_read(c, &frame, 1, &e) : NULL;
  df_tensor_unref(t);
  df_clip_close(c);
  return (c && t) ? "" : e.msg;
}

static void test_broken_frames(void) {
  unsigned char a[3] = {200, 30, 60}, b[3] = {20, 130, 220};
  unsigned char *p = two_colour(64, 48, a, b);
  for (int i = 0; i < 64 * 24 * 3; i++) p[i] = (unsigned char)((i * 2654435761u) >> 24); /* noise: */
  mkdir(at("broken"), 0700); /* most of the file is then entropy-coded data, cut below */
  write_jpeg(at("broken/0001.jpg"), 64, 48, 3, p);
  truncated_copy(at("broken/0001.jpg"), at("broken/0002.jpg"), 0.5);
  write_bytes(at("broken/0003.jpg"), "", 0);
  write_bytes(at("broken/0004.jpg"), "GIF89a not really", 17);
  write_jpeg(at("broken/0005.jpg"), 32, 48, 3, p); /* another size */
  truncated_copy(at("broken/0001.jpg"), at("broken/0006.jpg"), 0.003); /* header cut */
  write_png(at("broken/0007.png"), 64, 48, PNG_COLOR_TYPE_RGB, 8, 0, p, NULL, 0);
  truncated_copy(at("broken/0007.png"), at("broken/0008.png"), 0.6);
  free(p);
  mkdir(at("empty"), 0700);
  write_bytes(at("empty/readme.txt"), "x", 1);

  stderr_begin();
  CHECK(*clip_error(at("broken"), 0) == '\0');
  CHECK_CONTAINS(clip_error(at("broken"), 1), "broken/0002.jpg: truncated JPEG");
  CHECK_CONTAINS(clip_error(at("broken"), 2), "broken/0003.jpg: empty file");
  CHECK_CONTAINS(clip_error(at("broken"), 3), "broken/0004.jpg: not a JPEG or PNG image");
  CHECK_CONTAINS(clip_error(at("broken"), 4),
                 "broken/0005.jpg: frame is 32x48, but the clip's first frame is 64x48");
  CHECK_CONTAINS(clip_error(at("broken"), 5), "broken/0006.jpg: bad JPEG:");
  CHECK(*clip_error(at("broken"), 6) == '\0');
  CHECK_CONTAINS(clip_error(at("broken"), 7), "broken/0008.png: bad PNG:");
  CHECK_CONTAINS(clip_error(at("broken"), 8), "frame index 8 is out of range (the clip has 8 frames)");
  CHECK_CONTAINS(clip_error(at("broken"), -1), "frame index -1 is out of range");
  CHECK_CONTAINS(clip_error(at("nowhere"), 0), "nowhere: No such file or directory");
  CHECK_CONTAINS(clip_error(at("empty"), 0), "empty: no JPEG or PNG frames in the folder");
  /* a folder whose first frame is bad fails at open, naming the frame */
  mkdir(at("badfirst"), 0700);
  write_bytes(at("badfirst/0001.png"), "\x89PNG\r\n\x1a\n", 8);
  CHECK_CONTAINS(clip_error(at("badfirst"), 0), "badfirst/0001.png: bad PNG:");
  /* a path with non-UTF-8 bytes works byte for byte */
  mkdir(at("clip\xff\xfe"), 0700);
  unsigned char q[8 * 8 * 3] = {0};
  write_png(at("clip\xff\xfe/1.png"), 8, 8, PNG_COLOR_TYPE_RGB, 8, 0, q, NULL, 0);
  CHECK(*clip_error(at("clip\xff\xfe"), 0) == '\0');
  CHECK(stderr_end() == 0);
}

/* ---------------------------------------------------------------- video */

static void check_video(const char *path, int tol) {
  df_err e = {0};
  df_clip *c = df_clip_open(path, &e);
  CHECK(c != NULL);
  if (!c) {
    printf("# %s\n", e.msg);
    return;
  }
  int w, h;
  df_clip_size(c, &w, &h);
  CHECK(df_clip_count(c) == 20 && w == 64 && h == 48 && df_clip_is_video(c));
  /* from the start (frame 0 wanted), and windows that seek to a keyframe
  ** (the GOP is 6 frames; mpeg4 has B-frames) */
  static const int64_t sets[4][6] = {{19, 0, 5, 5, 12, 1}, {17, 13, 19, 13, 14, 18},
                                     {7, 8, 9, 10, 11, 6}, {12, 12, 12, 12, 12, 12}};
  for (int s = 0; s < 4; s++) {
    const int64_t *idx = sets[s];
    df_tensor *t = df_clip_read(c, idx, 6, &e);
    CHECK(t && t->shape[0] == 6 && t->shape[1] == 48 && t->shape[2] == 64);
    for (int f = 0; t && f < 6; f++) {
      unsigned char col[3];
      video_colour((int)idx[f], col);
      for (int k = 0; k < 3; k++) {
        CHECK(near(px(t, f, 8, 20)[k], col[k], tol));
        CHECK(near(px(t, f, 40, 50)[k], 255 - col[k], tol));
      }
    }
    df_tensor_unref(t);
  }
  int64_t bad = 20;
  CHECK(df_clip_read(c, &bad, 1, &e) == NULL);
  CHECK_CONTAINS(e.msg, "frame index 20 is out of range (the clip has 20 frames)");
  df_clip_close(c);
}

static void test_video(void) {
  stderr_begin();
  int ok_mp4 = write_video(at("v.mp4"), "mpeg4", 64, 48, 20) == 0;
  int ok_avi = write_video(at("v.avi"), "mjpeg", 64, 48, 20) == 0;
  long spam_enc = stderr_end();
  CHECK(ok_mp4 && ok_avi);
  (void)spam_enc; /* the encoder may talk; only our decoding must not */
  stderr_begin();
  if (ok_mp4) check_video(at("v.mp4"), 12);
  if (ok_avi) check_video(at("v.avi"), 12);
  /* broken videos: cut, empty, not a video, a format outside the list */
  truncated_copy(at("v.mp4"), at("cut.mp4"), 0.5);
  CHECK_CONTAINS(clip_error(at("cut.mp4"), 0), "cut.mp4: cannot open as a video:");
  write_bytes(at("zero.mp4"), "", 0);
  CHECK_CONTAINS(clip_error(at("zero.mp4"), 0), "zero.mp4: empty file");
  write_bytes(at("text.mp4"), "this is not a video at all, just some words\n", 44);
  CHECK_CONTAINS(clip_error(at("text.mp4"), 0), "text.mp4: cannot open as a video:");
  write_bytes(at("list.m3u8"), "#EXTM3U\n#EXTINF:1,\nfile:/etc/passwd\n", 36);
  CHECK_CONTAINS(clip_error(at("list.m3u8"), 0), "list.m3u8: cannot open as a video:");
  /* an AVI cut short opens with the frames it still has, or fails cleanly */
  truncated_copy(at("v.avi"), at("cut.avi"), 0.5);
  df_err e = {0};
  df_clip *c = df_clip_open(at("cut.avi"), &e);
  if (c) {
    int64_t n = df_clip_count(c), last = n - 1;
    CHECK(n >= 1 && n < 20);
    df_tensor *t = df_clip_read(c, &last, 1, &e);
    CHECK(t || strstr(e.msg, "cut.avi: "));
    df_tensor_unref(t);
  } else {
    CHECK_CONTAINS(e.msg, "cut.avi: ");
  }
  df_clip_close(c);
  CHECK(stderr_end() == 0);
}

/* ---------------------------------------------------------------- sampling */

static int same(const int64_t *got, const int64_t *want, int n) {
  for (int i = 0; i < n; i++)
    if (got[i] != want[i]) return 0;
  return 1;
}

/* The smallest seed whose first uniform draw below k is v. */
static uint64_t seed_for(uint64_t k, uint64_t v) {
  for (uint64_t s = 0;; s++)
    if (df_sample_uniform(s, k) == v) return s;
}

static void test_sample_train(void) {
  int64_t o[16];
  /* n = 10: n//4 = 2 -> linspace(0, 10, 2) = 0, 10; 14 more 10s; clipped to 9 */
  const int64_t n10[16] = {0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
  CHECK(df_sample_train(10, 16, 4, 1, o, NULL) == 0 && same(o, n10, 16));
  /* n = 30: linspace(0, 30, 7) = 0 5 10 15 20 25 30; 9 more 30s; clipped to 29 */
  const int64_t n30[16] = {0, 5, 10, 15, 20, 25, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29};
  CHECK(df_sample_train(30, 16, 4, 2, o, NULL) == 0 && same(o, n30, 16));
  /* n = 64: linspace(0, 64, 16), step 64/15 = 4.2667: 0 4.27 8.53 12.8 17.07 21.33
  ** 25.6 29.87 34.13 38.4 42.67 46.93 51.2 55.47 59.73 64 -> truncated, 64 -> 63 */
  const int64_t n64[16] = {0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63};
  CHECK(df_sample_train(64, 16, 4, 3, o, NULL) == 0 && same(o, n64, 16));
  /* n = 65: end in [64, 65) = 64, start 0: linspace(0, 64, 16) clipped to 63 */
  for (uint64_t s = 0; s < 5; s++) CHECK(df_sample_train(65, 16, 4, s, o, NULL) == 0 && same(o, n64, 16));
  /* n = 200: end = 64 + uniform(136); end 199 -> start 135, 135 + the n64 steps, last 198 */
  const int64_t n200[16] = {135, 139, 143, 147, 152, 156, 160, 164,
                            169, 173, 177, 181, 186, 190, 194, 198};
  CHECK(df_sample_train(200, 16, 4, seed_for(136, 135), o, NULL) == 0 && same(o, n200, 16));
  /* end 100 -> start 36 */
  const int64_t n200b[16] = {36, 40, 44, 48, 53, 57, 61, 65, 70, 74, 78, 82, 87, 91, 95, 99};
  CHECK(df_sample_train(200, 16, 4, seed_for(136, 36), o, NULL) == 0 && same(o, n200b, 16));
  /* n = 3 (< rate): linspace(0, 3, 0) is empty; sixteen 3s clipped to 2 */
  CHECK(df_sample_train(3, 16, 4, 0, o, NULL) == 0 && o[0] == 2 && o[15] == 2);
  df_err e = {0};
  CHECK(df_sample_train(0, 16, 4, 0, o, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "sample_train: a clip of 0 frames has nothing to sample");
}

static void test_sample_seeds(void) {
  int64_t a[16], b[16];
  int differ = 0;
  for (uint64_t s = 0; s < 20; s++) {
    df_sample_train(500, 16, 4, s, a, NULL);
    df_sample_train(500, 16, 4, s, b, NULL);
    CHECK(same(a, b, 16));
    CHECK(a[15] - a[0] == 63 && a[0] >= 0 && a[15] <= 499);
    df_sample_train(500, 16, 4, s + 1000, b, NULL);
    differ += !same(a, b, 16);
  }
  CHECK(differ >= 15);
  /* uniform draws cover their range and stay inside it */
  int seen[5] = {0};
  for (uint64_t s = 0; s < 200; s++) {
    uint64_t v = df_sample_uniform(s, 5);
    CHECK(v < 5);
    if (v < 5) seen[v]++;
  }
  for (int i = 0; i < 5; i++) CHECK(seen[i] > 10);
}

static void test_sample_test(void) {
  int64_t o[3 * 16];
  /* n = 10: frames 0 4 8, padded with 8 to 16 -> n' = 16, step 0: both segments alike */
  const int64_t n10[16] = {0, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  CHECK(df_sample_test(10, 16, 4, 2, o, NULL) == 0 && same(o, n10, 16) && same(o + 16, n10, 16));
  /* n = 65: frames 0 4 ... 64 (17), segments 2: step (17-16)/1 = 1 -> starts 0, 1 */
  int64_t w0[16], w1[16], w2[16];
  for (int j = 0; j < 16; j++) w0[j] = 4 * j, w1[j] = 4 * (j + 1);
  CHECK(df_sample_test(65, 16, 4, 2, o, NULL) == 0 && same(o, w0, 16) && same(o + 16, w1, 16));
  /* segments 3: step 0.5 -> starts int(0) = 0, int(0.5) = 0, int(1.0) = 1 */
  CHECK(df_sample_test(65, 16, 4, 3, o, NULL) == 0 && same(o, w0, 16) && same(o + 16, w0, 16) &&
        same(o + 32, w1, 16));
  /* n = 100: 25 frames 0..96; segments 3: step 4.5 -> starts 0, 4, 9 */
  for (int j = 0; j < 16; j++) w0[j] = 4 * j, w1[j] = 4 * (j + 4), w2[j] = 4 * (j + 9);
  CHECK(df_sample_test(100, 16, 4, 3, o, NULL) == 0 && same(o, w0, 16) && same(o + 16, w1, 16) &&
        same(o + 32, w2, 16));
  /* segments 2: step 9 -> starts 0, 9 */
  CHECK(df_sample_test(100, 16, 4, 2, o, NULL) == 0 && same(o, w0, 16) && same(o + 16, w2, 16));
  /* n = 200: 50 frames 0..196; segments 3: step 17 -> starts 0, 17, 34 */
  for (int j = 0; j < 16; j++) w0[j] = 4 * j, w1[j] = 4 * (j + 17), w2[j] = 4 * (j + 34);
  CHECK(df_sample_test(200, 16, 4, 3, o, NULL) == 0 && same(o, w0, 16) && same(o + 16, w1, 16) &&
        same(o + 32, w2, 16));
  CHECK(o[47] == 196);
  /* one segment starts at 0 (the original divides by zero) */
  CHECK(df_sample_test(200, 16, 4, 1, o, NULL) == 0 && same(o, w0, 16));
  df_err e = {0};
  CHECK(df_sample_test(200, 16, 4, 0, o, &e) == DF_EINVAL);
  CHECK_CONTAINS(e.msg, "segments 0 must be at least 1");
}

static void test_sample_pretrain(void) {
  int64_t o[16];
  /* n = 10: offsets 1, 5, 9 (9 + 4 = 13 is not < 10, so it stays): 0 4 8 8 ... */
  const int64_t n10[16] = {0, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  CHECK(df_sample_pretrain(10, 16, 4, 5, o, NULL) == 0 && same(o, n10, 16));
  /* n = 9: offsets 1, 5 (5 + 4 = 9 is not < 9): 0 4 4 ... */
  const int64_t n9[16] = {0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};
  CHECK(df_sample_pretrain(9, 16, 4, 5, o, NULL) == 0 && same(o, n9, 16));
  /* n = 30: 0 4 ... 28 (offset 29: 29 + 4 = 33 not < 30) then 28 again */
  const int64_t n30[16] = {0, 4, 8, 12, 16, 20, 24, 28, 28, 28, 28, 28, 28, 28, 28, 28};
  CHECK(df_sample_pretrain(30, 16, 4, 5, o, NULL) == 0 && same(o, n30, 16));
  /* n = 64: the start is uniform in [0, 64 - 64] = 0: 0 4 ... 60 */
  int64_t w[16];
  for (int j = 0; j < 16; j++) w[j] = 4 * j;
  CHECK(df_sample_pretrain(64, 16, 4, 9, o, NULL) == 0 && same(o, w, 16));
  /* n = 200: start uniform in [0, 136]; start 136 -> 136 140 ... 196 */
  for (int j = 0; j < 16; j++) w[j] = 136 + 4 * j;
  CHECK(df_sample_pretrain(200, 16, 4, seed_for(137, 136), o, NULL) == 0 && same(o, w, 16));
  for (int j = 0; j < 16; j++) w[j] = 7 + 4 * j;
  CHECK(df_sample_pretrain(200, 16, 4, seed_for(137, 7), o, NULL) == 0 && same(o, w, 16));
}

/* ---------------------------------------------------------------- loader */

typedef struct {
  int fail_mod; /* items with index % fail_mod == 3 fail (0: none) */
  int sleep_us; /* work per item */
} num_ctx;

/* Item i: an I64 tensor {i, seed}, after a seed-dependent pause so that
** workers finish out of order. */
static df_tensor *make_num(void *ctx, int64_t i, int worker, uint64_t seed, df_err *err) {
  num_ctx *c = ctx;
  usleep((useconds_t)(c->sleep_us ? c->sleep_us : (int)(seed % 3000)));
  if (c->fail_mod && i % c->fail_mod == 3) {
    df_err_set(err, DF_EFORMAT, "clips/bad%lld.mp4: cannot open as a video", (long long)i);
    return NULL;
  }
  int64_t shape[1] = {2};
  df_tensor *t = df_tensor_new(DF_I64, 1, shape, err);
  if (t) ((int64_t *)t->data)[0] = i, ((int64_t *)t->data)[1] = (int64_t)seed;
  return t;
}

typedef struct {
  int n;
  char last[512];
} warn_log;

static void log_warn(void *ctx, const char *line) {
  warn_log *w = ctx;
  w->n++;
  snprintf(w->last, sizeof w->last, "%s", line);
}

static void test_loader_order(void) {
  num_ctx nc = {0, 0};
  for (int workers = 0; workers <= 4; workers += 2) {
    df_loader_opts o = {.n_items = 40, .workers = workers, .depth = 3, .seed = 77,
                        .fn = make_num, .ctx = &nc};
    df_err e = {0};
    df_loader *l = df_loader_new(&o, &e);
    CHECK(l != NULL);
    if (!l) return;
    df_tensor *t;
    int64_t idx, want = 0;
    while (df_loader_next(l, &t, &idx)) {
      const int64_t *v = t->data;
      CHECK(idx == want && v[0] == want && (uint64_t)v[1] == df_loader_item_seed(77, want));
      want++;
      df_tensor_unref(t);
    }
    CHECK(want == 40 && t == NULL);
    CHECK(df_loader_next(l, &t, &idx) == 0); /* stays at the end */
    df_loader_stats st;
    df_loader_get_stats(l, &st);
    CHECK(st.items == 40 && st.skipped == 0 && st.waited_s >= 0 && st.held_s >= 0);
    df_loader_close(l);
  }
}

static void test_loader_skip(void) {
  num_ctx nc = {5, 100};
  warn_log wl = {0, ""};
  df_loader_opts o = {.n_items = 12, .workers = 2, .depth = 4, .seed = 1, .fn = make_num,
                      .ctx = &nc, .warn = log_warn, .warn_ctx = &wl};
  df_loader *l = df_loader_new(&o, NULL);
  CHECK(l != NULL);
  if (!l) return;
  df_tensor *t;
  int64_t idx, got[12];
  int n = 0;
  while (df_loader_next(l, &t, &idx)) {
    got[n++] = idx;
    df_tensor_unref(t);
  }
  const int64_t want[10] = {0, 1, 2, 4, 5, 6, 7, 9, 10, 11}; /* 3 and 8 fail */
  CHECK(n == 10 && same(got, want, 10));
  df_loader_stats st;
  df_loader_get_stats(l, &st);
  CHECK(st.items == 10 && st.skipped == 2);
  CHECK(wl.n == 2); /* one line per bad item */
  CHECK_CONTAINS(wl.last, "skipping item 8: clips/bad8.mp4: cannot open as a video");
  df_loader_close(l);
  /* the default warning goes to stderr, one line */
  stderr_begin();
  o.warn = NULL;
  o.n_items = 5;
  l = df_loader_new(&o, NULL);
  while (l && df_loader_next(l, &t, &idx)) df_tensor_unref(t);
  df_loader_close(l);
  long bytes = stderr_end();
  size_t len;
  char *text = (char *)read_bytes(at("stderr.txt"), &len);
  if (text) text[len] = '\0';
  CHECK(bytes > 0);
  CHECK(text && strcmp(text, "dferc: warning: skipping item 3: clips/bad3.mp4: cannot open as a video\n") == 0);
  free(text);
}

static void test_loader_close_early(void) {
  num_ctx nc = {0, 1000};
  df_loader_opts o = {.n_items = 100000, .workers = 4, .depth = 8, .seed = 3, .fn = make_num,
                      .ctx = &nc};
  /* closed at once, before any item */
  df_loader *l = df_loader_new(&o, NULL);
  CHECK(l != NULL);
  df_loader_close(l);
  /* closed with a full queue and workers waiting for space */
  l = df_loader_new(&o, NULL);
  df_tensor *t;
  int64_t idx;
  for (int i = 0; l && i < 3; i++) {
    CHECK(df_loader_next(l, &t, &idx) == 1 && idx == i);
    df_tensor_unref(t);
  }
  usleep(50000);
  df_loader_close(l);
  /* bad options */
  df_err e = {0};
  o.depth = 0;
  CHECK(df_loader_new(&o, &e) == NULL);
  CHECK_CONTAINS(e.msg, "loader: bad options");
}

static void test_loader_stats(void) {
  /* fast items, slow consumer: the consumer holds items */
  num_ctx fast = {0, 1};
  df_loader_opts o = {.n_items = 5, .workers = 2, .depth = 2, .seed = 0, .fn = make_num,
                      .ctx = &fast};
  df_loader *l = df_loader_new(&o, NULL);
  df_tensor *t;
  int64_t idx;
  while (l && df_loader_next(l, &t, &idx)) {
    df_tensor_unref(t);
    usleep(20000);
  }
  df_loader_stats st;
  if (l) df_loader_get_stats(l, &st);
  CHECK(l && st.held_s >= 0.08); /* 4 pauses of 20 ms between returns */
  df_loader_close(l);
  /* slow items (30 ms, one worker), eager consumer: the consumer waits */
  num_ctx slow = {0, 30000};
  o.workers = 1;
  o.ctx = &slow;
  o.n_items = 3;
  l = df_loader_new(&o, NULL);
  while (l && df_loader_next(l, &t, &idx)) df_tensor_unref(t);
  if (l) df_loader_get_stats(l, &st);
  CHECK(l && st.waited_s >= 0.08 && st.items == 3);
  df_loader_close(l);
}

/* The loader around clips: item i reads the training frames of clip i. */
typedef struct {
  const char *paths[3];
} clip_ctx;

static df_tensor *make_clip(void *ctx, int64_t i, int worker, uint64_t seed, df_err *err) {
  clip_ctx *c = ctx;
  df_clip *clip = df_clip_open(c->paths[i], err);
  if (!clip) return NULL;
  int64_t idx[16];
  df_tensor *t = NULL;
  if (df_sample_train(df_clip_count(clip), 16, 4, seed, idx, err) == 0)
    t = df_clip_read(clip, idx, 16, err);
  df_clip_close(clip);
  return t;
}

static void test_loader_clips(void) {
  clip_ctx cc = {{at("jpg"), at("nowhere"), at("v.mp4")}};
  warn_log wl = {0, ""};
  df_loader_opts o = {.n_items = 3, .workers = 2, .depth = 2, .seed = 11, .fn = make_clip,
                      .ctx = &cc, .warn = log_warn, .warn_ctx = &wl};
  df_loader *l = df_loader_new(&o, NULL);
  df_tensor *t;
  int64_t idx;
  int n = 0;
  while (l && df_loader_next(l, &t, &idx)) {
    CHECK(t->shape[0] == 16 && (idx == 0 ? t->shape[1] == 16 : t->shape[1] == 48));
    n++;
    df_tensor_unref(t);
  }
  CHECK(n == 2 && wl.n == 1);
  CHECK_CONTAINS(wl.last, "skipping item 1: ");
  CHECK_CONTAINS(wl.last, "nowhere: No such file or directory");
  df_loader_close(l);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/dferc_test_data.XXXXXX");
  if (!mkdtemp(tmp)) {
    printf("not ok test_data: mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  TEST(test_csv_format);
  TEST(test_csv_errors);
  TEST(test_jpeg_folder);
  TEST(test_png_folder);
  TEST(test_single_image);
  TEST(test_broken_frames);
  TEST(test_video);
  TEST(test_sample_train);
  TEST(test_sample_seeds);
  TEST(test_sample_test);
  TEST(test_sample_pretrain);
  alarm(10);
  TEST(test_loader_order);
  TEST(test_loader_skip);
  TEST(test_loader_close_early);
  TEST(test_loader_stats);
  TEST(test_loader_clips);
  alarm(0);
  if (!getenv("KEEP")) nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_exit();
}

/*
** clip.c -- clips as numbered RGB frames (see clip.h).
**
** Three parts: frame images (libjpeg-turbo and libpng, each decode
** wrapped so that a library error longjmps back into the decode function
** that set the trap, frees what it holds and returns a df_err; no jump
** ever crosses another function), videos (FFmpeg, whose log goes to a
** thread-local "last message" instead of stderr), and the clip handle
** that dispatches between them.
*/
#define _GNU_SOURCE
#include "runtime/clip.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <png.h>   /* brings setjmp.h */
#include <jpeglib.h>
#include <jerror.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#define FRAME_FILE_MAX ((size_t)256 << 20) /* a frame image over 256 MiB is refused */
#define QMAX 240                           /* bytes of a path quoted in a message */

struct df_clip {
  char *path;
  char qpath[QMAX];
  int video;
  int64_t n;
  int w, h;
  char **files; /* frame images: n paths in frame order; NULL for a video */
  /* a video whose every packet has a pts: the n pts in presentation order
     and the keyframes' pts (sorted), for seeking; else NULL (decoded from
     the start) */
  int64_t *pts, *keys;
  int64_t nkeys;
};

static const char *quote(char *buf, const char *s) {
  return df_err_quote(buf, QMAX, s, strlen(s));
}

/* ======================================================== frame images */

/*
** Read a whole frame file into *buf (owned by the caller).  A zero-length
** file is an error of its own, since it is the usual sign of a failed
** extraction.
*/
static int load_file(const char *file, const char *qfile, unsigned char **buf, size_t *len,
                     df_err *err) {
  FILE *f = fopen(file, "rb");
  if (!f) return df_err_set(err, DF_EIO, "%s: cannot open: %s", qfile, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return df_err_set(err, DF_EIO, "%s: cannot stat: %s", qfile, strerror(e));
  }
  if (st.st_size <= 0) {
    fclose(f);
    return df_err_set(err, DF_EFORMAT, "%s: empty file", qfile);
  }
  if ((uint64_t)st.st_size > FRAME_FILE_MAX) {
    fclose(f);
    return df_err_set(err, DF_EFORMAT, "%s: %lld bytes is too large for a frame image", qfile,
                      (long long)st.st_size);
  }
  size_t n = (size_t)st.st_size;
  unsigned char *b = malloc(n);
  if (!b) {
    fclose(f);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory for %zu bytes", qfile, n);
  }
  size_t got = fread(b, 1, n, f);
  int rerr = ferror(f);
  fclose(f);
  if (got != n) {
    free(b);
    return df_err_set(err, DF_EIO, "%s: %s", qfile,
                      rerr ? "read error" : "file shrank while being read");
  }
  *buf = b;
  *len = n;
  return DF_OK;
}

static int is_jpeg(const unsigned char *b, size_t n) {
  return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}

static int is_png(const unsigned char *b, size_t n) {
  return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int check_pixels(const char *qfile, int64_t w, int64_t h, df_err *err) {
  if (w < 1 || h < 1 || w * h > DF_CLIP_MAX_PIXELS)
    return df_err_set(err, DF_EFORMAT, "%s: frame size %lldx%lld is out of range", qfile,
                      (long long)w, (long long)h);
  return DF_OK;
}

static int size_differs(const char *qfile, int w, int h, int want_w, int want_h, df_err *err) {
  return df_err_set(err, DF_EFORMAT, "%s: frame is %dx%d, but the clip's first frame is %dx%d",
                    qfile, w, h, want_w, want_h);
}

/* libjpeg's error manager, extended with the jump back into jpeg_decode. */
typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  int truncated; /* saw "premature end of JPEG file" */
} jpeg_trap;

static void jpeg_trap_exit(j_common_ptr ci) { longjmp(((jpeg_trap *)ci->err)->jb, 1); }

/* Warnings stay quiet; only a premature end of data is remembered (PIL
** refuses truncated images; libjpeg would pad them with grey). */
static void jpeg_trap_emit(j_common_ptr ci, int level) {
  if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) ((jpeg_trap *)ci->err)->truncated = 1;
}

static void jpeg_trap_output(j_common_ptr ci) { (void)ci; }

/*
** Decode a JPEG held in buf[0..len).  dst NULL: read the header only and
** return the size in *w, *h.  Otherwise decode RGB into dst (want_h rows
** of want_w * 3 bytes), which the image must fill exactly.
*/
static int jpeg_decode(const char *qfile, const unsigned char *buf, size_t len,
                       unsigned char *dst, int want_w, int want_h, int *w, int *h,
                       df_err *err) {
  struct jpeg_decompress_struct ci;
  jpeg_trap trap;
  memset(&ci, 0, sizeof ci);
  ci.err = jpeg_std_error(&trap.pub);
  trap.pub.error_exit = jpeg_trap_exit;
  trap.pub.emit_message = jpeg_trap_emit;
  trap.pub.output_message = jpeg_trap_output;
  trap.truncated = 0;
  if (setjmp(trap.jb)) {
    char msg[JMSG_LENGTH_MAX];
    trap.pub.format_message((j_common_ptr)&ci, msg);
    jpeg_destroy_decompress(&ci);
    return df_err_set(err, DF_EFORMAT, "%s: bad JPEG: %s", qfile, msg);
  }
  jpeg_create_decompress(&ci);
  jpeg_mem_src(&ci, buf, (unsigned long)len);
  jpeg_read_header(&ci, TRUE);
  int rc = check_pixels(qfile, ci.image_width, ci.image_height, err);
  if (rc == DF_OK) {
    *w = (int)ci.image_width;
    *h = (int)ci.image_height;
    if (dst && (*w != want_w || *h != want_h)) rc = size_differs(qfile, *w, *h, want_w, want_h, err);
    else if (dst && (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK))
      rc = df_err_set(err, DF_EUNSUPPORTED, "%s: CMYK JPEG is not supported", qfile);
  }
  if (rc || !dst) {
    jpeg_destroy_decompress(&ci);
    return rc;
  }
  ci.out_color_space = JCS_RGB;
  jpeg_start_decompress(&ci);
  if (ci.output_components != 3 || (int)ci.output_width != want_w ||
      (int)ci.output_height != want_h) {
    jpeg_destroy_decompress(&ci);
    return df_err_set(err, DF_EFORMAT, "%s: unexpected JPEG output layout", qfile);
  }
  while (ci.output_scanline < ci.output_height) {
    JSAMPROW row = dst + (size_t)ci.output_scanline * (size_t)want_w * 3;
    jpeg_read_scanlines(&ci, &row, 1);
  }
  jpeg_finish_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  if (trap.truncated) return df_err_set(err, DF_EFORMAT, "%s: truncated JPEG", qfile);
  return DF_OK;
}

/* libpng reads from memory; its errors and warnings land here. */
typedef struct {
  const unsigned char *buf;
  size_t len, pos;
  char msg[200];
} png_src;

static void png_trap_error(png_structp p, png_const_charp msg) {
  png_src *s = png_get_error_ptr(p);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(p, 1);
}

static void png_trap_warn(png_structp p, png_const_charp msg) {
  (void)p;
  (void)msg;
}

static void png_read_mem(png_structp p, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(p);
  if (n > s->len - s->pos) png_error(p, "truncated file");
  memcpy(out, s->buf + s->pos, n);
  s->pos += n;
}

/*
** Decode a PNG held in buf[0..len); the contract is jpeg_decode's.  Every
** colour type becomes 8-bit RGB: palettes and low bit depths expanded,
** 16-bit samples cut to their high byte, grey replicated, alpha dropped.
*/
static int png_decode(const char *qfile, const unsigned char *buf, size_t len,
                      unsigned char *dst, int want_w, int want_h, int *w, int *h,
                      df_err *err) {
  png_src src = {buf, len, 0, "unknown error"};
  /* volatile: rows is set before the setjmp and read after a longjmp */
  png_bytep *volatile rows = NULL;
  if (dst) {
    png_bytep *r = malloc((size_t)want_h * sizeof *r);
    if (!r) return df_err_set(err, DF_ENOMEM, "%s: out of memory", qfile);
    for (int y = 0; y < want_h; y++) r[y] = dst + (size_t)y * (size_t)want_w * 3;
    rows = r;
  }
  png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_trap_error,
                                         png_trap_warn);
  png_infop info = p ? png_create_info_struct(p) : NULL;
  if (!info) {
    png_destroy_read_struct(p ? &p : NULL, NULL, NULL);
    free(rows);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", qfile);
  }
  if (setjmp(png_jmpbuf(p))) {
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    return df_err_set(err, DF_EFORMAT, "%s: bad PNG: %s", qfile, src.msg);
  }
  png_set_read_fn(p, &src, png_read_mem);
  png_read_info(p, info);
  png_uint_32 pw = png_get_image_width(p, info), ph = png_get_image_height(p, info);
  int rc = check_pixels(qfile, pw, ph, err);
  if (rc == DF_OK) {
    *w = (int)pw;
    *h = (int)ph;
    if (dst && (*w != want_w || *h != want_h)) rc = size_differs(qfile, *w, *h, want_w, want_h, err);
  }
  if (rc || !dst) {
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    return rc;
  }
  png_set_expand(p);
  png_set_strip_16(p);
  png_set_strip_alpha(p);
  png_set_gray_to_rgb(p);
  png_set_interlace_handling(p);
  png_read_update_info(p, info);
  if (png_get_channels(p, info) != 3 || png_get_rowbytes(p, info) != (size_t)want_w * 3) {
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    return df_err_set(err, DF_EFORMAT, "%s: unexpected PNG output layout", qfile);
  }
  png_read_image(p, rows);
  png_destroy_read_struct(&p, &info, NULL);
  free(rows);
  return DF_OK;
}

/*
** Decode one frame image, JPEG or PNG by its first bytes; the contract is
** jpeg_decode's.
*/
static int image_decode(const char *file, unsigned char *dst, int want_w, int want_h, int *w,
                        int *h, df_err *err) {
  char qfile[QMAX];
  quote(qfile, file);
  unsigned char *buf = NULL;
  size_t len = 0;
  int rc = load_file(file, qfile, &buf, &len, err);
  if (rc) return rc;
  if (is_jpeg(buf, len)) rc = jpeg_decode(qfile, buf, len, dst, want_w, want_h, w, h, err);
  else if (is_png(buf, len)) rc = png_decode(qfile, buf, len, dst, want_w, want_h, w, h, err);
  else rc = df_err_set(err, DF_EFORMAT, "%s: not a JPEG or PNG image", qfile);
  free(buf);
  return rc;
}

/* ======================================================== videos */

/* FFmpeg's log: the last error-level message of this thread, never printed. */
static _Thread_local char av_last[200];

static void av_quiet_log(void *avcl, int level, const char *fmt, va_list vl) {
  (void)avcl;
  if (level > AV_LOG_ERROR) return;
  vsnprintf(av_last, sizeof av_last, fmt, vl);
  size_t n = strlen(av_last);
  while (n > 0 && (av_last[n - 1] == '\n' || av_last[n - 1] == '\r')) av_last[--n] = '\0';
}

static pthread_once_t av_once = PTHREAD_ONCE_INIT;
static void av_setup(void) { av_log_set_callback(av_quiet_log); }

/* Record an FFmpeg failure: "<path>: <what>: <av error> (<last log line>)". */
static int av_fail(const char *qpath, const char *what, int averr, df_err *err) {
  char e[AV_ERROR_MAX_STRING_SIZE] = "";
  if (averr < 0) av_strerror(averr, e, sizeof e);
  char q[QMAX];
  df_err_quote(q, sizeof q, av_last, strlen(av_last));
  return df_err_set(err, DF_EFORMAT, "%s: %s%s%s%s%s%s", qpath, what, *e ? ": " : "", e,
                    *q ? " (" : "", q, *q ? ")" : "");
}

typedef struct {
  AVFormatContext *fc;
  AVCodecContext *cc; /* NULL unless opened with a decoder */
  int stream;
} video;

static void video_close(video *v) {
  avcodec_free_context(&v->cc);
  avformat_close_input(&v->fc);
}

/*
** Open `path` as a video limited to local files and the listed
** containers, pick its best video stream and (with_decoder) open a
** one-thread decoder for it.  On failure v holds nothing.
*/
static int video_open(const char *path, const char *qpath, int with_decoder, video *v,
                      df_err *err) {
  pthread_once(&av_once, av_setup);
  av_last[0] = '\0';
  memset(v, 0, sizeof *v);
  size_t n = strlen(path);
  char *url = malloc(n + 6);
  if (!url) return df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
  memcpy(url, "file:", 5);
  memcpy(url + 5, path, n + 1);
  AVDictionary *opts = NULL;
  av_dict_set(&opts, "protocol_whitelist", "file", 0);
  av_dict_set(&opts, "format_whitelist",
              "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm,flv,mpeg,mpegts", 0);
  int rc = avformat_open_input(&v->fc, url, NULL, &opts);
  av_dict_free(&opts);
  free(url);
  if (rc < 0) return av_fail(qpath, "cannot open as a video", rc, err);
  rc = avformat_find_stream_info(v->fc, NULL);
  if (rc < 0) {
    video_close(v);
    return av_fail(qpath, "cannot read the stream information", rc, err);
  }
  const AVCodec *dec = NULL;
  rc = av_find_best_stream(v->fc, AVMEDIA_TYPE_VIDEO, -1, -1, &dec, 0);
  if (rc < 0) {
    video_close(v);
    return av_fail(qpath, rc == AVERROR_DECODER_NOT_FOUND ? "no decoder for its video stream"
                                                          : "no video stream",
                   0, err);
  }
  v->stream = rc;
  for (unsigned i = 0; i < v->fc->nb_streams; i++)
    if ((int)i != v->stream) v->fc->streams[i]->discard = AVDISCARD_ALL;
  if (!with_decoder) return DF_OK;
  v->cc = avcodec_alloc_context3(dec);
  if (!v->cc) {
    video_close(v);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", qpath);
  }
  AVStream *st = v->fc->streams[v->stream];
  rc = avcodec_parameters_to_context(v->cc, st->codecpar);
  if (rc >= 0) {
    v->cc->thread_count = 1;
    v->cc->pkt_timebase = st->time_base;
    rc = avcodec_open2(v->cc, dec, NULL);
  }
  if (rc < 0) {
    video_close(v);
    return av_fail(qpath, "cannot open the decoder", rc, err);
  }
  return DF_OK;
}

static int i64_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Make *a hold at least `need` entries (capacity *cap); 0 when out of memory. */
static int grow64(int64_t **a, int64_t *cap, int64_t need) {
  if (need <= *cap) return 1;
  int64_t nc = *cap ? *cap * 2 : 256;
  while (nc < need) nc *= 2;
  int64_t *na = realloc(*a, (size_t)nc * sizeof *na);
  if (!na) return 0;
  *a = na, *cap = nc;
  return 1;
}

/*
** Open a video clip: the size from the stream parameters, the frame count
** by demuxing every packet of the stream (no decoding).  A packet read
** error ends the stream, as it does for decoding.  The packets' pts and
** keyframes are kept for seeking (video_read).
*/
static int video_probe(df_clip *c, df_err *err) {
  video v;
  int rc = video_open(c->path, c->qpath, 0, &v, err);
  if (rc) return rc;
  AVCodecParameters *par = v.fc->streams[v.stream]->codecpar;
  rc = check_pixels(c->qpath, par->width, par->height, err);
  c->w = par->width;
  c->h = par->height;
  AVPacket *pkt = rc ? NULL : av_packet_alloc();
  if (!rc && !pkt) rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", c->qpath);
  int64_t n = 0, cap = 0, nk = 0, kcap = 0;
  int64_t *pts = NULL, *keys = NULL;
  int seekable = 1;
  while (!rc && av_read_frame(v.fc, pkt) >= 0) {
    if (pkt->stream_index == v.stream && !(pkt->flags & AV_PKT_FLAG_DISCARD)) {
      n++;
      if (seekable && pkt->pts == AV_NOPTS_VALUE) seekable = 0;
      if (seekable && !grow64(&pts, &cap, n)) seekable = 0;
      if (seekable) pts[n - 1] = pkt->pts;
      if (seekable && (pkt->flags & AV_PKT_FLAG_KEY)) {
        if (grow64(&keys, &kcap, nk + 1)) keys[nk++] = pkt->pts;
        else seekable = 0;
      }
    }
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  video_close(&v);
  if (!rc && n == 0) rc = df_err_set(err, DF_EFORMAT, "%s: the video has no frames", c->qpath);
  c->n = n;
  if (!rc && seekable && nk > 0) {
    qsort(pts, (size_t)n, sizeof *pts, i64_cmp);
    qsort(keys, (size_t)nk, sizeof *keys, i64_cmp);
    for (int64_t i = 1; i < n && seekable; i++) seekable = pts[i] != pts[i - 1]; /* unique */
  }
  if (!rc && seekable && nk > 0) {
    c->pts = pts, c->keys = keys, c->nkeys = nk;
  } else {
    free(pts);
    free(keys);
  }
  return rc;
}

/* The index of value x in the sorted a[0..n), or -1. */
static int64_t find64(const int64_t *a, int64_t n, int64_t x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && a[lo] == x ? lo : -1;
}

/* (frame index, output position), sorted by index then position. */
typedef struct {
  int64_t idx, pos;
} want;

static int want_cmp(const void *a, const void *b) {
  const want *x = a, *y = b;
  if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

/*
** Decode the frames ws[0..n) (sorted) of a video into out ([*, H, W, 3],
** frame at ws[j].pos), converting only the wanted ones.  Without `seek`
** it decodes from the start and counts frames; with it, it seeks to the
** last keyframe at or before the first wanted frame and names each
** decoded frame by its pts (c->pts).  Whenever the seek cannot be
** trusted (the seek fails, a frame has an unknown pts, a wanted frame is
** passed by) it sets *retry and returns without an error: the caller
** decodes from the start instead.
*/
static int video_decode(df_clip *c, const want *ws, int64_t n, unsigned char *out, int seek, int *retry,
                        df_err *err) {
  video v;
  int rc = video_open(c->path, c->qpath, 1, &v, err);
  if (rc) return rc;
  if (seek) {
    int64_t target = c->pts[ws[0].idx], lo = 0, hi = c->nkeys; /* last key <= target */
    while (lo < hi) {
      int64_t mid = lo + (hi - lo) / 2;
      if (c->keys[mid] <= target) lo = mid + 1;
      else hi = mid;
    }
    if (lo == 0 || av_seek_frame(v.fc, v.stream, c->keys[lo - 1], AVSEEK_FLAG_BACKWARD) < 0) {
      video_close(&v);
      *retry = 1;
      return DF_OK;
    }
    avcodec_flush_buffers(v.cc);
  }
  const size_t row = (size_t)c->w * 3, fbytes = row * (size_t)c->h;
  AVPacket *pkt = av_packet_alloc();
  AVFrame *fr = av_frame_alloc();
  uint8_t *rgb[4] = {NULL};
  int rgb_ls[4];
  struct SwsContext *sws = NULL;
  if (!pkt || !fr || av_image_alloc(rgb, rgb_ls, c->w, c->h, AV_PIX_FMT_RGB24, 64) < 0)
    rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", c->qpath);
  int64_t k = 0, j = 0; /* this frame's index; next wanted entry */
  int input_done = 0;
  char what[96];
  while (!rc && j < n && !*retry) {
    int r = avcodec_receive_frame(v.cc, fr);
    if (r == 0) {
      if (seek) {
        int64_t p = fr->best_effort_timestamp;
        k = p == AV_NOPTS_VALUE ? -1 : find64(c->pts, c->n, p);
        if (k < 0 || k > ws[j].idx) {
          *retry = 1;
          break;
        }
      }
      if (ws[j].idx == k) {
        if (fr->width != c->w || fr->height != c->h) {
          rc = df_err_set(err, DF_EFORMAT, "%s: frame %lld is %dx%d, but the video is %dx%d",
                          c->qpath, (long long)k, fr->width, fr->height, c->w, c->h);
          break;
        }
        sws = sws_getCachedContext(sws, c->w, c->h, fr->format, c->w, c->h, AV_PIX_FMT_RGB24,
                                   SWS_BICUBIC, NULL, NULL, NULL);
        if (!sws) {
          const char *fmt = av_get_pix_fmt_name(fr->format);
          rc = df_err_set(err, DF_EUNSUPPORTED, "%s: cannot convert pixel format %s to RGB",
                          c->qpath, fmt ? fmt : "?");
          break;
        }
        sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, c->h, rgb, rgb_ls);
        for (; j < n && ws[j].idx == k; j++) {
          unsigned char *dst = out + (size_t)ws[j].pos * fbytes;
          for (int y = 0; y < c->h; y++) memcpy(dst + (size_t)y * row, rgb[0] + (size_t)y * rgb_ls[0], row);
        }
      }
      k++;
      av_frame_unref(fr);
    } else if (r == AVERROR_EOF) {
      break;
    } else if (r != AVERROR(EAGAIN)) {
      if (seek) *retry = 1; /* judged by the decode from the start */
      else {
        snprintf(what, sizeof what, "cannot decode frame %lld", (long long)k);
        rc = av_fail(c->qpath, what, r, err);
      }
    } else if (input_done) {
      break; /* a decoder that wants input after the flush: nothing more comes */
    } else if (av_read_frame(v.fc, pkt) < 0) {
      input_done = 1;
      avcodec_send_packet(v.cc, NULL);
    } else {
      if (pkt->stream_index == v.stream) {
        r = avcodec_send_packet(v.cc, pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
          if (seek) *retry = 1;
          else {
            snprintf(what, sizeof what, "cannot decode frame %lld", (long long)k);
            rc = av_fail(c->qpath, what, r, err);
          }
        }
      }
      av_packet_unref(pkt);
    }
  }
  if (seek && !rc && j < n) *retry = 1; /* ended early after a seek: decode from the start */
  if (!rc && !*retry && j < n)
    rc = df_err_set(err, DF_EFORMAT, "%s: frame %lld could not be decoded (the video ends after %lld of %lld frames)",
                    c->qpath, (long long)ws[j].idx, (long long)k, (long long)c->n);
  sws_freeContext(sws);
  av_freep(&rgb[0]);
  av_frame_free(&fr);
  av_packet_free(&pkt);
  video_close(&v);
  return rc;
}

/* Decode the wanted frames: seeking where the video allows it (a long
** video's late window costs its GOP, not everything before it). */
static int video_read(df_clip *c, const want *ws, int64_t n, unsigned char *out, df_err *err) {
  int retry = 0;
  if (c->pts) {
    int rc = video_decode(c, ws, n, out, 1, &retry, err);
    if (rc || !retry) return rc;
    retry = 0;
  }
  return video_decode(c, ws, n, out, 0, &retry, err);
}

/* ======================================================== folders */

static int has_image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Join folder and name with one '/' (the folder may end in '/'). */
static char *join(const char *dir, const char *name) {
  size_t dn = strlen(dir), nn = strlen(name);
  int slash = dn > 0 && dir[dn - 1] != '/';
  char *p = malloc(dn + (size_t)slash + nn + 1);
  if (!p) return NULL;
  memcpy(p, dir, dn);
  if (slash) p[dn] = '/';
  memcpy(p + dn + (size_t)slash, name, nn + 1);
  return p;
}

/*
** List the frame images of the folder c->path into c->files (sorted by
** name: the folder part is the same for all, so comparing whole paths
** compares names).
*/
static int folder_list(df_clip *c, df_err *err) {
  DIR *d = opendir(c->path);
  if (!d) return df_err_set(err, DF_EIO, "%s: cannot open the folder: %s", c->qpath, strerror(errno));
  size_t cap = 0;
  int rc = DF_OK;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno) rc = df_err_set(err, DF_EIO, "%s: cannot list the folder: %s", c->qpath, strerror(errno));
      break;
    }
    if (de->d_name[0] == '.' || !has_image_ext(de->d_name)) continue;
    char *p = join(c->path, de->d_name);
    struct stat st;
    if (p && (stat(p, &st) != 0 || !S_ISREG(st.st_mode))) {
      free(p);
      continue;
    }
    if (p && (size_t)c->n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      char **nf = realloc(c->files, ncap * sizeof *nf);
      if (nf) c->files = nf, cap = ncap;
      else free(p), p = NULL;
    }
    if (!p) {
      rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", c->qpath);
      break;
    }
    c->files[c->n++] = p;
  }
  closedir(d);
  if (rc) return rc;
  if (c->n == 0) return df_err_set(err, DF_EFORMAT, "%s: no JPEG or PNG frames in the folder", c->qpath);
  qsort(c->files, (size_t)c->n, sizeof *c->files, str_cmp);
  return DF_OK;
}

/* ======================================================== clips */

/* The first bytes of a file, to tell an image from a video. */
static size_t read_head(const char *path, unsigned char *b, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t got = fread(b, 1, n, f);
  fclose(f);
  return got;
}

df_clip *df_clip_open(const char *path, df_err *err) {
  df_clip *c = calloc(1, sizeof *c);
  if (c) c->path = strdup(path);
  if (!c || !c->path) {
    free(c);
    char q[QMAX];
    df_err_set(err, DF_ENOMEM, "%s: out of memory", quote(q, path));
    return NULL;
  }
  quote(c->qpath, path);
  struct stat st;
  int rc;
  if (stat(path, &st) != 0) {
    rc = df_err_set(err, DF_EIO, "%s: %s", c->qpath, strerror(errno));
  } else if (S_ISDIR(st.st_mode)) {
    rc = folder_list(c, err);
    if (!rc) rc = image_decode(c->files[0], NULL, 0, 0, &c->w, &c->h, err);
  } else if (!S_ISREG(st.st_mode)) {
    rc = df_err_set(err, DF_EINVAL, "%s: not a file or folder", c->qpath);
  } else if (st.st_size == 0) {
    rc = df_err_set(err, DF_EFORMAT, "%s: empty file", c->qpath);
  } else {
    unsigned char head[8];
    size_t got = read_head(path, head, sizeof head);
    if (is_jpeg(head, got) || is_png(head, got)) {
      c->files = malloc(sizeof *c->files);
      if (c->files && (c->files[0] = strdup(path)) != NULL) c->n = 1;
      rc = c->n ? image_decode(path, NULL, 0, 0, &c->w, &c->h, err)
                : df_err_set(err, DF_ENOMEM, "%s: out of memory", c->qpath);
    } else {
      c->video = 1;
      rc = video_probe(c, err);
    }
  }
  if (rc) {
    df_clip_close(c);
    return NULL;
  }
  return c;
}

void df_clip_close(df_clip *c) {
  if (!c) return;
  for (int64_t i = 0; c->files && i < c->n; i++) free(c->files[i]);
  free(c->files);
  free(c->pts);
  free(c->keys);
  free(c->path);
  free(c);
}

const char *df_clip_path(const df_clip *c) { return c->path; }
int64_t df_clip_count(const df_clip *c) { return c->n; }
int df_clip_is_video(const df_clip *c) { return c->video; }

void df_clip_size(const df_clip *c, int *width, int *height) {
  if (width) *width = c->w;
  if (height) *height = c->h;
}

df_tensor *df_clip_read(df_clip *c, const int64_t *idx, int64_t n, df_err *err) {
  if (n < 0) {
    df_err_set(err, DF_EINVAL, "%s: read: negative frame count", c->qpath);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= c->n) {
      df_err_set(err, DF_EINVAL, "%s: frame index %lld is out of range (the clip has %lld frames)",
                 c->qpath, (long long)idx[i], (long long)c->n);
      return NULL;
    }
  int64_t shape[4] = {n, c->h, c->w, 3};
  df_tensor *t = df_tensor_new(DF_U8, 4, shape, err);
  want *ws = malloc((size_t)(n ? n : 1) * sizeof *ws);
  if (!t || !ws) {
    df_tensor_unref(t);
    free(ws);
    df_err_set(err, DF_ENOMEM, "%s: out of memory", c->qpath);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) ws[i] = (want){idx[i], i};
  qsort(ws, (size_t)n, sizeof *ws, want_cmp);
  unsigned char *out = t->data;
  const size_t fbytes = (size_t)c->w * (size_t)c->h * 3;
  int rc = DF_OK;
  if (c->video) {
    rc = video_read(c, ws, n, out, err);
  } else {
    for (int64_t j = 0; j < n && !rc; j++) {
      unsigned char *dst = out + (size_t)ws[j].pos * fbytes;
      int w, h;
      if (j > 0 && ws[j].idx == ws[j - 1].idx) memcpy(dst, out + (size_t)ws[j - 1].pos * fbytes, fbytes);
      else rc = image_decode(c->files[ws[j].idx], dst, c->w, c->h, &w, &h, err);
    }
  }
  free(ws);
  if (rc) {
    df_tensor_unref(t);
    return NULL;
  }
  return t;
}

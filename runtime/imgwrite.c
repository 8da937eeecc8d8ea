/*
** imgwrite.c -- see imgwrite.h.  libjpeg's and libpng's error exits are
** trapped with setjmp inside each function (no longjmp crosses our code).
*/
#include "runtime/imgwrite.h"

#include <errno.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <string.h>
#include <unistd.h>

typedef struct jerr_trap {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jerr_trap;

static void jpeg_trap_exit(j_common_ptr c) {
  jerr_trap *t = (jerr_trap *)c->err;
  c->err->format_message(c, t->msg);
  longjmp(t->jb, 1);
}

static void jpeg_quiet(j_common_ptr c) { (void)c; }

static FILE *open_tmp(const char *path, char *tmp, size_t n, df_err *err) {
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) df_err_set(err, DF_EIO, "%s: cannot write: %s", path, strerror(errno));
  return f;
}

static int finish(FILE *f, const char *tmp, const char *path, int failed, df_err *err) {
  if (fflush(f) != 0 || ferror(f)) failed = failed ? failed : df_err_set(err, DF_EIO, "%s: write failed", path);
  if (fclose(f) != 0 && !failed) failed = df_err_set(err, DF_EIO, "%s: write failed", path);
  if (!failed && rename(tmp, path) != 0) failed = df_err_set(err, DF_EIO, "%s: %s", path, strerror(errno));
  if (failed) remove(tmp);
  return failed;
}

int df_write_jpeg(const char *path, const uint8_t *rgb, int w, int h, int quality, df_err *err) {
  if (w < 1 || h < 1 || w > 65500 || h > 65500) return df_err_set(err, DF_EINVAL, "%s: bad image size %dx%d", path, w, h);
  char tmp[4200];
  FILE *f = open_tmp(path, tmp, sizeof tmp, err);
  if (!f) return DF_EIO;
  struct jpeg_compress_struct c;
  jerr_trap t;
  c.err = jpeg_std_error(&t.pub);
  t.pub.error_exit = jpeg_trap_exit;
  t.pub.output_message = jpeg_quiet;
  if (setjmp(t.jb)) {
    jpeg_destroy_compress(&c);
    df_err_set(err, DF_EIO, "%s: %s", path, t.msg);
    return finish(f, tmp, path, DF_EIO, err);
  }
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * (size_t)w * 3);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  return finish(f, tmp, path, 0, err);
}

int df_write_png(const char *path, const uint8_t *rgb, int w, int h, df_err *err) {
  if (w < 1 || h < 1 || w > 65500 || h > 65500) return df_err_set(err, DF_EINVAL, "%s: bad image size %dx%d", path, w, h);
  char tmp[4200];
  FILE *f = open_tmp(path, tmp, sizeof tmp, err);
  if (!f) return DF_EIO;
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = p ? png_create_info_struct(p) : NULL;
  if (!p || !info) {
    png_destroy_write_struct(&p, &info);
    df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
    return finish(f, tmp, path, DF_ENOMEM, err);
  }
  if (setjmp(png_jmpbuf(p))) {
    png_destroy_write_struct(&p, &info);
    df_err_set(err, DF_EIO, "%s: PNG write failed", path);
    return finish(f, tmp, path, DF_EIO, err);
  }
  png_init_io(p, f);
  png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(p, info);
  for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
  png_write_end(p, NULL);
  png_destroy_write_struct(&p, &info);
  return finish(f, tmp, path, 0, err);
}

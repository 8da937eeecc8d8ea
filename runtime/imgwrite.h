/*
** imgwrite.h -- writing RGB u8 images as JPEG (libjpeg-turbo) or PNG
** (libpng): the demo dataset's frames and the reconstruction pictures.
** Each file is written to PATH.tmp.<pid> and renamed into place.
*/
#ifndef DF_IMGWRITE_H
#define DF_IMGWRITE_H

#include <stdint.h>

#include "compiler/err.h"

/* rgb: h rows of w pixels, 3 bytes each (row-major, no padding). */
int df_write_jpeg(const char *path, const uint8_t *rgb, int w, int h, int quality, df_err *err);
int df_write_png(const char *path, const uint8_t *rgb, int w, int h, df_err *err);

#endif

/*
** vidwrite.h -- encoding RGB u8 frames as a video file with FFmpeg (the
** container from the file name's extension: .mp4, .avi, .mkv, ...), for
** tests and demo data.  Written to PATH.tmp.<pid>.EXT and renamed.
*/
#ifndef DF_VIDWRITE_H
#define DF_VIDWRITE_H

#include <stdint.h>

#include "compiler/err.h"

/* rgb: frames x h x w x 3 bytes.  codec: an FFmpeg encoder name ("mpeg4",
** "mjpeg", ...); NULL for mpeg4.  w and h must be even. */
int df_write_video(const char *path, const uint8_t *rgb, int frames, int w, int h, int fps,
                   const char *codec, df_err *err);

#endif

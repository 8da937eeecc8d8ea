/*
** clip.h -- a video clip as numbered RGB frames: a folder of frame images
** or a video file.
**
** A folder: its JPEG and PNG files are the frames, in bytewise (strcmp)
** order of their names -- the order of Python's sorted() on the names, so
** "10.jpg" comes before "9.jpg"; name frames with zero padding (00001.jpg)
** as the original's preprocessing does.  A file counts when its name ends
** in .jpg, .jpeg or .png (any case), does not start with '.' (the
** original's glob skips those too), and is a regular file or a link to
** one; everything else in the folder (sub-folders, .txt, ...) is ignored.
** The format of a frame is read from its first bytes, not its name.
** All frames must have the size of the first; grey and palette images,
** 16-bit samples and alpha are turned into 8-bit RGB (alpha dropped, as
** PIL's convert("RGB") does).
**
** A single JPEG or PNG file: a clip of one frame (the original repeats a
** lone image clip_len times; sampling a 1-frame clip gives that).
**
** Any other file: a video, demuxed and decoded by FFmpeg (containers MP4 /
** MOV, AVI, Matroska / WebM, FLV, MPEG-PS / TS; any codec FFmpeg
** decodes), one decoder thread, frames converted to RGB24 by swscale.  The
** frame count is the number of the video stream's packets, counted when
** the clip opens; frames are numbered in presentation order.  Rotation
** metadata is ignored, as decord does.  Each read decodes from the start
** up to the last frame it needs (face clips are short); a clip handle
** holds no open file between calls.
**
** Errors name the file (and the frame file or frame number): a missing
** path, an empty folder, a zero-length, truncated or undecodable frame or
** video.  The decoders never print: libjpeg, libpng and FFmpeg messages
** are caught and put in the error instead.  Handles are not shared
** between threads; separate handles may be used on separate threads.
*/
#ifndef DF_CLIP_H
#define DF_CLIP_H

#include <stdint.h>

#include "compiler/err.h"
#include "runtime/tensor.h"

typedef struct df_clip df_clip;

/* Larger frames are refused (a broken header must not allocate GiBs). */
#define DF_CLIP_MAX_PIXELS ((int64_t)1 << 26)

/* Open a clip: list the frames (folder) or count them (video), and read
** the frame size.  NULL with err set. */
df_clip *df_clip_open(const char *path, df_err *err);
void df_clip_close(df_clip *c);

const char *df_clip_path(const df_clip *c);
int64_t df_clip_count(const df_clip *c);
void df_clip_size(const df_clip *c, int *width, int *height);
/* 1 for a video file, 0 for frame images. */
int df_clip_is_video(const df_clip *c);

/* Decode frames idx[0..n) (any order, repeats allowed, each in
** [0, count)) into a new U8 tensor [n, H, W, 3] (RGB), one reference
** for the caller.  NULL with err set. */
df_tensor *df_clip_read(df_clip *c, const int64_t *idx, int64_t n, df_err *err);

#endif

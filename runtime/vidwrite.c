/*
** vidwrite.c -- see vidwrite.h.
*/
#include "runtime/vidwrite.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int df_write_video(const char *path, const uint8_t *rgb, int frames, int w, int h, int fps,
                   const char *codec, df_err *err) {
  if (frames < 1 || w < 2 || h < 2 || (w & 1) || (h & 1) || fps < 1)
    return df_err_set(err, DF_EINVAL, "%s: bad video geometry %d frames of %dx%d", path, frames, w, h);
  const char *ext = strrchr(path, '.');
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld%s", path, (long)getpid(), ext ? ext : "");
  AVFormatContext *oc = NULL;
  if (avformat_alloc_output_context2(&oc, NULL, NULL, tmp) < 0 || !oc)
    return df_err_set(err, DF_EINVAL, "%s: no container for this file name", path);
  const AVCodec *enc = avcodec_find_encoder_by_name(codec ? codec : "mpeg4");
  AVStream *st = enc ? avformat_new_stream(oc, NULL) : NULL;
  AVCodecContext *cc = st ? avcodec_alloc_context3(enc) : NULL;
  AVFrame *fr = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  struct SwsContext *sws = NULL;
  int rc = -1, opened = 0;
  const char *why = "out of memory";
  if (!enc) why = "no such encoder";
  if (!cc || !fr || !pkt) goto done;
  cc->width = w;
  cc->height = h;
  cc->time_base = (AVRational){1, fps};
  cc->framerate = (AVRational){fps, 1};
  cc->pix_fmt = strcmp(enc->name, "mjpeg") == 0 ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  cc->gop_size = 12;
  cc->flags |= AV_CODEC_FLAG_QSCALE;
  cc->global_quality = FF_QP2LAMBDA * 3;
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  why = "cannot open the encoder";
  if (avcodec_open2(cc, enc, NULL) < 0 || avcodec_parameters_from_context(st->codecpar, cc) < 0) goto done;
  st->time_base = cc->time_base;
  why = strerror(errno);
  if (avio_open(&oc->pb, tmp, AVIO_FLAG_WRITE) < 0) goto done;
  opened = 1;
  why = "cannot write the header";
  if (avformat_write_header(oc, NULL) < 0) goto done;
  fr->format = cc->pix_fmt;
  fr->width = w;
  fr->height = h;
  why = "out of memory";
  if (av_frame_get_buffer(fr, 0) < 0) goto done;
  sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, cc->pix_fmt, SWS_BICUBIC, NULL, NULL, NULL);
  if (!sws) goto done;
  why = "encoding failed";
  for (int i = 0; i <= frames; i++) {
    if (i < frames) {
      if (av_frame_make_writable(fr) < 0) goto done;
      const uint8_t *src[1] = {rgb + (size_t)i * (size_t)w * (size_t)h * 3};
      int ls[1] = {w * 3};
      sws_scale(sws, src, ls, 0, h, fr->data, fr->linesize);
      fr->pts = i;
      fr->quality = cc->global_quality;
      if (avcodec_send_frame(cc, fr) < 0) goto done;
    } else if (avcodec_send_frame(cc, NULL) < 0) {
      goto done;
    }
    while (avcodec_receive_packet(cc, pkt) == 0) {
      if (pkt->duration == 0) pkt->duration = 1;
      av_packet_rescale_ts(pkt, cc->time_base, st->time_base);
      pkt->stream_index = st->index;
      if (av_interleaved_write_frame(oc, pkt) < 0) goto done;
    }
  }
  rc = av_write_trailer(oc) < 0 ? -1 : 0;
done:
  if (oc && oc->pb) avio_closep(&oc->pb);
  sws_freeContext(sws);
  av_packet_free(&pkt);
  av_frame_free(&fr);
  avcodec_free_context(&cc);
  avformat_free_context(oc);
  if (rc == 0 && rename(tmp, path) != 0) {
    why = strerror(errno);
    rc = -1;
  }
  if (rc) {
    if (opened) remove(tmp);
    return df_err_set(err, DF_EIO, "%s: %s", path, why);
  }
  return 0;
}

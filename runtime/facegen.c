/*
** facegen.c -- see facegen.h.  A face is drawn analytically per pixel,
** anti-aliased by signed distances: the pixel's position goes from image
** coordinates to "face units" (head half-width = 1, v pointing down, the
** head's centre at 0), then through a cylinder yaw mapping to the frontal
** surface coordinates (us, v) in which the features are laid out.  Every
** feature is a closed-form shape there (ellipses, lid curves, stroke
** curves, lip bands), tested against a bound first, so a pixel of
** background costs a copy and a hash.
**
** Randomness is counter-based (SplitMix64 of a key and a counter): each
** concern (identity, scene, motion, timing, noise) has its own stream of
** the clip's seed, so a clip is the same on any thread, and the class
** label never feeds a random draw.
*/
#include "runtime/facegen.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/imgwrite.h"

const char *const df_facegen_class_names[DF_FACEGEN_CLASSES] = {
  "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"};

#define PI_F 3.14159265f

/* ------------------------------------------------------------ randomness */

static uint64_t fg_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct fg_rng {
  uint64_t key, n;
} fg_rng;

/* Stream `id` of `seed`. */
static fg_rng fg_stream(uint64_t seed, uint64_t id) {
  fg_rng r = {fg_mix(fg_mix(seed) ^ (id * 0xd1b54a32d192ed03ull)), 0};
  return r;
}

static float fg_uni(fg_rng *r) {
  r->n++;
  return (float)((fg_mix(r->key + r->n * 0x9e3779b97f4a7c15ull) >> 40) * 0x1p-24);
}

static float fg_range(fg_rng *r, float a, float b) { return a + (b - a) * fg_uni(r); }

static int fg_below(fg_rng *r, int n) {
  int k = (int)(fg_uni(r) * (float)n);
  return k < n ? k : n - 1;
}

uint64_t df_facegen_clip_seed(uint64_t seed, int i) {
  return fg_mix(fg_mix(seed ^ 0x5eed5eed5eed5eedull) + (uint64_t)i * 0x9e3779b97f4a7c15ull);
}

int df_facegen_clip_label(int i) { return i % DF_FACEGEN_CLASSES; }

/* ---------------------------------------------------------- expressions */

/*
** The face-shape parameters an expression moves (0 = the identity's rest
** face).  eye_open is relative (+0.5 = half as wide again); smile_asym,
** lip_raise_asym act on the clip's sneer side.
*/
typedef struct fg_expr {
  float brow_raise, brow_inner, brow_squeeze, brow_arch;
  float eye_open, lower_lid;
  float smile, smile_asym, mouth_open, mouth_width, lip_press, lip_raise, lip_raise_asym;
  float nose_wrinkle, cheek, furrow, forehead;
} fg_expr;

#define FG_EXPR_N ((int)(sizeof(fg_expr) / sizeof(float)))

/*
** The apex of each class at intensity 1, by class id.  The classes are
** drawn as a caricature: at the demo's 64 x 64 input a face is ~50
** pixels wide, and each class must move a few pixels of its own in at
** least two places (brows, eyes, mouth), with the pairs that share a
** feature (surprise / fear: wide eyes; angry / disgust: low brows; happy
** / disgust: narrowed eyes) told apart by another (the mouth's shape).
*/
static const fg_expr fg_targets[DF_FACEGEN_CLASSES] = {
  /* happy: a wide U smile, teeth showing, cheeks push the lower lids up */
  {.brow_raise = 0.15f, .eye_open = -0.4f, .lower_lid = 1.0f, .smile = 1.6f, .mouth_open = 0.45f,
   .mouth_width = 0.7f, .cheek = 1.0f},
  /* sad: inner brow ends high, heavy lids, a deep frown */
  {.brow_raise = 0.1f, .brow_inner = 1.6f, .brow_arch = -0.6f, .eye_open = -0.5f, .smile = -1.8f,
   .mouth_width = -0.15f, .lip_press = 0.4f, .forehead = 0.6f},
  /* neutral */
  {.brow_raise = 0.0f},
  /* angry: brows far down and in (a V), glaring eyes, lips pressed thin */
  {.brow_raise = -1.1f, .brow_inner = -1.3f, .brow_squeeze = 1.2f, .eye_open = 0.15f, .lower_lid = 0.8f,
   .smile = -0.4f, .mouth_width = -0.3f, .lip_press = 1.2f, .nose_wrinkle = 0.2f, .furrow = 1.3f},
  /* surprise: brows high and arched, eyes wide, jaw dropped, a tall round mouth */
  {.brow_raise = 1.5f, .brow_arch = 0.9f, .eye_open = 0.9f, .mouth_open = 1.5f, .mouth_width = -0.55f,
   .forehead = 1.2f},
  /* disgust: nose wrinkled, upper lip raised on one side, narrowed eyes, low brows */
  {.brow_raise = -0.6f, .brow_inner = -0.4f, .brow_squeeze = 0.6f, .eye_open = -0.5f, .lower_lid = 0.9f,
   .smile = -0.6f, .smile_asym = 0.6f, .mouth_open = 0.2f, .lip_raise = 1.5f, .lip_raise_asym = 0.7f,
   .nose_wrinkle = 1.3f, .furrow = 0.5f},
  /* fear: brows up and drawn together, eyes wide, mouth stretched wide and open */
  {.brow_raise = 0.9f, .brow_inner = 1.2f, .brow_squeeze = 0.9f, .brow_arch = -0.5f, .eye_open = 0.8f,
   .smile = -0.6f, .mouth_open = 0.6f, .mouth_width = 0.85f, .lip_press = 0.3f, .furrow = 0.4f,
   .forehead = 0.8f},
};

/* ------------------------------------------------------------ the clip */

/* Identity: the face's geometry (face units) and colours (0..255). */
typedef struct fg_ident {
  float H, taper;
  float eye_y, eye_sp, eye_w, eye_h, eye_tilt, iris_r;
  float brow_gap, brow_th, brow_arch;
  float nose_y, nose_w, nose_depth;
  float mouth_y, mouth_w, lip_up, lip_dn;
  float fold, blush;
  float rest_smile, rest_brow, rest_eye;
  float skin[3], lip[3], hair[3], brow[3], iris[3], sclera[3], cloth[3];
  int hair_style; /* 0 short, 1 long, 2 receding, 3 parted */
  float hairline, hair_part, hair_len, hair_vol, strand_f;
  int neckline;
} fg_ident;

/* Scene and motion: everything else that is drawn once per clip. */
typedef struct fg_scene {
  float light[3], amb, tint[3], noise_amp;
  float cx, cy, sc, roll, yaw;                       /* base pose (pixels, radians) */
  float sway[5], sway_f[5], sway_p[5];               /* cx cy roll yaw scale */
  float gaze_x, gaze_y, gaze2_x, gaze2_y, gaze_t;
  int blinks;
  float blink_t[3];
  float onset, dur, intensity;
  float idle_a[3], idle_f[3], idle_p[3];
  float flicker_a, flicker_f, flicker_p;
  int asym; /* +1 or -1: the sneer side */
  uint64_t noise_key, jitter_key;
} fg_scene;

/* One frame's resolved geometry. */
typedef struct fg_frame {
  float cx, cy, sc, cr, sr, cyaw, syaw, tyaw; /* centre, scale, cos/sin roll, cos/sin/tan yaw */
  float eye_up[2], eye_lo[2], gx, gy;
  float brow_y[2], brow_inner[2], brow_arch, brow_sq;
  float mouth_y, mouth_x, mouth_w, smile[2], open, raise[2], lu, ll;
  float nose_y, wrinkle, fold[2], crow, furrow, forehead;
  float flicker;
} fg_frame;

typedef struct fg_clip {
  int label, frames, size;
  fg_ident id;
  fg_scene sn;
  float *bg; /* size * size * 3 */
} fg_clip;

/* Plain max and min: fmaxf/fminf are library calls without -ffast-math. */
static inline float fg_max(float a, float b) { return a > b ? a : b; }
static inline float fg_min(float a, float b) { return a < b ? a : b; }

static float fg_clampf(float x, float a, float b) { return x < a ? a : x > b ? b : x; }

static float fg_smooth(float x) {
  x = fg_clampf(x, 0.0f, 1.0f);
  return x * x * (3.0f - 2.0f * x);
}

static void fg_mixc(float *c, const float *col, float a) {
  c[0] += (col[0] - c[0]) * a;
  c[1] += (col[1] - c[1]) * a;
  c[2] += (col[2] - c[2]) * a;
}

static void fg_dark(float *c, float k) {
  float m = 1.0f - k;
  c[0] *= m;
  c[1] *= m;
  c[2] *= m;
}

static void fg_lerp3(float *out, const float *a, const float *b, float t) {
  for (int k = 0; k < 3; k++) out[k] = a[k] + (b[k] - a[k]) * t;
}

/* A random colour of a palette row, jittered. */
static void fg_pick(fg_rng *r, float *out, const float pal[][3], int n, float jit) {
  int i = fg_below(r, n);
  for (int k = 0; k < 3; k++) out[k] = fg_clampf(pal[i][k] + fg_range(r, -jit, jit), 0.0f, 255.0f);
}

/*
** Draw the identity of a clip from its own stream.  The ranges keep the
** rest face well inside what the expressions move, so that the shape of
** an apex is not confused with an unusual face.
*/
static void fg_draw_ident(uint64_t seed, fg_ident *id) {
  static const float skins[][3] = {{248, 214, 190}, {236, 192, 160}, {218, 170, 130}, {190, 140, 100},
                                   {150, 100, 70},  {110, 72, 50},   {230, 196, 150}, {205, 160, 120}};
  static const float hairs[][3] = {{25, 20, 18}, {60, 40, 28}, {110, 75, 45}, {170, 130, 80},
                                   {215, 185, 120}, {140, 60, 30}, {150, 150, 150}, {45, 35, 40}};
  static const float irises[][3] = {{70, 45, 25}, {110, 75, 40}, {60, 100, 150}, {80, 120, 80}, {100, 100, 110}};
  static const float cloths[][3] = {{40, 60, 120}, {150, 30, 40}, {40, 110, 60}, {200, 200, 200},
                                    {30, 30, 35},  {180, 140, 60}, {110, 60, 140}, {60, 140, 160}};
  fg_rng r = fg_stream(seed, 1);
  id->H = fg_range(&r, 1.18f, 1.32f);
  id->taper = fg_range(&r, 0.06f, 0.2f);
  id->eye_y = fg_range(&r, -0.12f, -0.04f);
  id->eye_sp = fg_range(&r, 0.36f, 0.44f);
  id->eye_w = fg_range(&r, 0.2f, 0.24f);
  id->eye_h = fg_range(&r, 0.095f, 0.11f);
  id->eye_tilt = fg_range(&r, -0.08f, 0.12f);
  id->iris_r = id->eye_h * fg_range(&r, 1.0f, 1.12f);
  id->brow_gap = fg_range(&r, 0.17f, 0.22f);
  id->brow_th = fg_range(&r, 0.06f, 0.08f);
  id->brow_arch = fg_range(&r, 0.015f, 0.04f);
  id->nose_y = fg_range(&r, 0.3f, 0.38f);
  id->nose_w = fg_range(&r, 0.16f, 0.22f);
  id->nose_depth = fg_range(&r, 0.2f, 0.3f);
  id->mouth_y = id->nose_y + fg_range(&r, 0.25f, 0.3f);
  id->mouth_w = fg_range(&r, 0.32f, 0.38f);
  id->lip_up = fg_range(&r, 0.045f, 0.065f);
  id->lip_dn = fg_range(&r, 0.055f, 0.08f);
  id->fold = fg_range(&r, 0.02f, 0.1f);
  id->blush = fg_range(&r, 0.0f, 0.12f);
  id->rest_smile = fg_range(&r, -0.12f, 0.12f);
  id->rest_brow = fg_range(&r, -0.12f, 0.12f);
  id->rest_eye = fg_range(&r, -0.08f, 0.08f);
  /* skin: a blend of two neighbouring tones */
  int n = (int)(sizeof skins / sizeof skins[0]);
  int s0 = fg_below(&r, n);
  fg_lerp3(id->skin, skins[s0], skins[(s0 + 1) % n], fg_range(&r, 0.0f, 0.5f));
  static const float red[3] = {190, 70, 80};
  fg_lerp3(id->lip, id->skin, red, fg_range(&r, 0.35f, 0.55f));
  fg_dark(id->lip, fg_range(&r, 0.05f, 0.2f));
  fg_pick(&r, id->hair, hairs, (int)(sizeof hairs / sizeof hairs[0]), 12.0f);
  for (int k = 0; k < 3; k++) id->brow[k] = id->hair[k] * 0.6f + 12.0f;
  fg_pick(&r, id->iris, irises, (int)(sizeof irises / sizeof irises[0]), 12.0f);
  float sw = fg_range(&r, 225.0f, 245.0f);
  id->sclera[0] = sw, id->sclera[1] = sw - 4.0f, id->sclera[2] = sw - 8.0f;
  fg_pick(&r, id->cloth, cloths, (int)(sizeof cloths / sizeof cloths[0]), 25.0f);
  id->hair_style = fg_below(&r, 4);
  id->hairline = -id->H * (id->hair_style == 2 ? fg_range(&r, 0.72f, 0.82f) : fg_range(&r, 0.52f, 0.62f));
  id->hair_part = id->hair_style == 3 ? fg_range(&r, -0.2f, 0.2f) : 0.0f;
  id->hair_len = id->hair_style == 1 ? fg_range(&r, 0.6f, 1.6f) : fg_range(&r, -0.25f, 0.0f);
  id->hair_vol = fg_range(&r, 0.04f, 0.16f);
  id->strand_f = fg_range(&r, 40.0f, 90.0f);
  id->neckline = fg_below(&r, 2);
}

/*
** Scene, pose path, gaze, blinks, timing and noise, each from the seed's
** own stream (never from the label).  The onset lies in the first 30% of
** the clip and the apex is reached by 65% of it (so that 8 frames at
** stride 4 hold it in 3 or more).
*/
static void fg_draw_scene(uint64_t seed, int frames, int size, fg_scene *s) {
  fg_rng r = fg_stream(seed, 2);
  float az = fg_range(&r, 0.0f, 2.0f * PI_F), el = fg_range(&r, 0.2f, 0.9f);
  float lz = fg_range(&r, 0.7f, 1.4f);
  float ln = sqrtf(el * el + 1.0f + lz * lz);
  s->light[0] = cosf(az) / ln, s->light[1] = (sinf(az) * 0.6f - el * 0.4f) / ln, s->light[2] = lz / ln;
  s->amb = fg_range(&r, 0.45f, 0.7f);
  float warm = fg_range(&r, -0.08f, 0.08f), lum = fg_range(&r, 0.85f, 1.1f);
  s->tint[0] = lum * (1.0f + warm), s->tint[1] = lum, s->tint[2] = lum * (1.0f - warm);
  s->noise_amp = fg_range(&r, 1.0f, 5.0f);
  s->flicker_a = fg_range(&r, 0.0f, 0.025f);
  s->flicker_f = fg_range(&r, 0.5f, 3.0f);
  s->flicker_p = fg_range(&r, 0.0f, 2.0f * PI_F);

  fg_rng m = fg_stream(seed, 3);
  float S = (float)size;
  s->sc = S * fg_range(&m, 0.42f, 0.46f);
  s->cx = S * (0.5f + fg_range(&m, -0.03f, 0.03f));
  s->cy = S * (0.5f + fg_range(&m, -0.02f, 0.02f)) - 0.25f * s->sc;
  s->roll = fg_range(&m, -0.08f, 0.08f);
  s->yaw = fg_range(&m, -0.16f, 0.16f);
  static const float amp[5] = {0.02f, 0.015f, 0.035f, 0.07f, 0.015f};
  for (int k = 0; k < 5; k++) {
    s->sway[k] = amp[k] * fg_uni(&m);
    s->sway_f[k] = fg_range(&m, 0.3f, 1.5f);
    s->sway_p[k] = fg_range(&m, 0.0f, 2.0f * PI_F);
  }
  s->gaze_x = fg_range(&m, -0.035f, 0.035f), s->gaze_y = fg_range(&m, -0.012f, 0.012f);
  s->gaze2_x = fg_range(&m, -0.035f, 0.035f), s->gaze2_y = fg_range(&m, -0.012f, 0.012f);
  s->gaze_t = fg_uni(&m) < 0.5f ? fg_range(&m, 0.2f, 0.9f) * (float)frames : 1e9f;
  for (int k = 0; k < 3; k++) {
    s->idle_a[k] = fg_range(&m, 0.0f, 0.05f);
    s->idle_f[k] = fg_range(&m, 0.3f, 2.0f);
    s->idle_p[k] = fg_range(&m, 0.0f, 2.0f * PI_F);
  }
  s->asym = fg_uni(&m) < 0.5f ? -1 : 1;

  fg_rng t = fg_stream(seed, 4);
  float last = (float)(frames - 1);
  s->onset = fg_range(&t, 0.05f, 0.3f) * last;
  s->dur = fg_range(&t, 0.15f, 0.35f) * last;
  s->intensity = fg_range(&t, 0.85f, 1.0f);
  s->blinks = fg_below(&t, 3);
  for (int k = 0; k < 3; k++) s->blink_t[k] = fg_range(&t, 0.1f, 1.0f) * last + 1.0f;

  s->noise_key = fg_stream(seed, 5).key;
  s->jitter_key = fg_stream(seed, 6).key;
}

/*
** The background: a two-colour gradient, a few soft blobs and one texture
** (none, stripes, checks or grain), from the scene's stream; it does not
** move, and it knows nothing of the class.
*/
static void fg_draw_background(uint64_t seed, int size, float *bg) {
  fg_rng r = fg_stream(seed, 7);
  float c0[3], c1[3], blob[3][3], bx[3], by[3], br[3];
  for (int k = 0; k < 3; k++) c0[k] = fg_range(&r, 30.0f, 230.0f);
  for (int k = 0; k < 3; k++) c1[k] = fg_clampf(c0[k] + fg_range(&r, -70.0f, 70.0f), 10.0f, 245.0f);
  float ang = fg_range(&r, 0.0f, 2.0f * PI_F), gdx = cosf(ang), gdy = sinf(ang);
  int nblob = fg_below(&r, 4);
  for (int b = 0; b < 3; b++) {
    for (int k = 0; k < 3; k++) blob[b][k] = fg_range(&r, -45.0f, 45.0f);
    bx[b] = fg_uni(&r), by[b] = fg_uni(&r), br[b] = fg_range(&r, 0.15f, 0.5f);
  }
  int tex = fg_below(&r, 4);
  float tamp = fg_range(&r, 4.0f, 16.0f), tf = fg_range(&r, 4.0f, 18.0f), ta = fg_range(&r, 0.0f, PI_F);
  float tcx = cosf(ta), tsx = sinf(ta);
  uint64_t gkey = r.key ^ 0xabcdef;
  float S = (float)size;
  for (int y = 0; y < size; y++) {
    for (int x = 0; x < size; x++) {
      float X = ((float)x + 0.5f) / S, Y = ((float)y + 0.5f) / S;
      float g = fg_clampf(0.5f + (X - 0.5f) * gdx + (Y - 0.5f) * gdy, 0.0f, 1.0f);
      float *c = bg + ((size_t)y * (size_t)size + (size_t)x) * 3;
      fg_lerp3(c, c0, c1, g);
      for (int b = 0; b < nblob; b++) {
        float dx = X - bx[b], dy = Y - by[b];
        float w = expf(-(dx * dx + dy * dy) / (br[b] * br[b]));
        for (int k = 0; k < 3; k++) c[k] += blob[b][k] * w;
      }
      float t = 0.0f;
      float px = X * tcx + Y * tsx, py = -X * tsx + Y * tcx;
      if (tex == 1) t = sinf(px * tf * 2.0f * PI_F);
      else if (tex == 2) t = sinf(px * tf * PI_F) * sinf(py * tf * PI_F) > 0.0f ? 0.6f : -0.6f;
      else if (tex == 3) t = (float)(fg_mix(gkey + (uint64_t)(y * size + x)) >> 40) * 0x1p-23f - 1.0f;
      float vig = 1.0f - 0.25f * ((X - 0.5f) * (X - 0.5f) + (Y - 0.5f) * (Y - 0.5f));
      for (int k = 0; k < 3; k++) c[k] = (c[k] + t * tamp) * vig;
    }
  }
}

/* ---------------------------------------------------------- per frame */

/*
** Resolve frame fi: the pose on its path, the expression weight (a
** smoothstep from onset to apex, times the clip's intensity), idle motion
** and blinks, and from them the features' geometry in face units.
*/
static void fg_frame_setup(const fg_clip *k, int fi, fg_frame *f) {
  const fg_ident *id = &k->id;
  const fg_scene *s = &k->sn;
  float t = (float)fi, ph = 2.0f * PI_F * t / (float)k->frames;
  float sw[5];
  for (int i = 0; i < 5; i++) sw[i] = s->sway[i] * sinf(ph * s->sway_f[i] + s->sway_p[i]);
  uint64_t j = fg_mix(s->jitter_key + (uint64_t)fi);
  float S = (float)k->size;
  f->cx = s->cx + S * sw[0] + 0.3f * ((float)(j & 0xffff) * 0x1p-16f - 0.5f);
  f->cy = s->cy + S * sw[1] + 0.3f * ((float)((j >> 16) & 0xffff) * 0x1p-16f - 0.5f);
  f->sc = s->sc * (1.0f + sw[4]);
  float roll = s->roll + sw[2], yaw = s->yaw + sw[3];
  f->cr = cosf(roll), f->sr = sinf(roll);
  f->cyaw = cosf(yaw), f->syaw = sinf(yaw), f->tyaw = f->syaw / f->cyaw;
  f->flicker = 1.0f + s->flicker_a * sinf(ph * s->flicker_f + s->flicker_p);

  float w = s->intensity * fg_smooth((t - s->onset) / (s->dur > 0.5f ? s->dur : 0.5f));
  const fg_expr *tg = &fg_targets[k->label];
  fg_expr e;
  const float *tv = (const float *)tg;
  float *ev = (float *)&e;
  for (int i = 0; i < FG_EXPR_N; i++) ev[i] = w * tv[i];
  float idle[3];
  for (int i = 0; i < 3; i++) idle[i] = s->idle_a[i] * sinf(ph * s->idle_f[i] + s->idle_p[i]);
  e.smile += id->rest_smile + idle[0];
  e.brow_raise += id->rest_brow + idle[1];
  float talk = fg_max(0.0f, idle[2]) * 0.6f;

  float blink = 1.0f;
  for (int b = 0; b < s->blinks; b++) {
    float d = fabsf(t - s->blink_t[b]) / 1.6f;
    if (d < 1.0f) blink = fg_min(blink, d * d);
  }
  int gz = t >= s->gaze_t;
  f->gx = gz ? s->gaze2_x : s->gaze_x;
  f->gy = gz ? s->gaze2_y : s->gaze_y;

  float eo = fg_clampf((1.0f + id->rest_eye) * (1.0f + e.eye_open), 0.2f, 1.9f);
  for (int side = 0; side < 2; side++) {
    f->eye_up[side] = id->eye_h * eo * blink;
    f->eye_lo[side] = id->eye_h * 0.55f * (1.0f - 0.55f * e.lower_lid) *
                      (1.0f + 0.35f * fg_max(0.0f, e.eye_open)) * (0.35f + 0.65f * blink);
    f->brow_y[side] = id->eye_y - id->brow_gap - 0.1f * e.brow_raise;
    f->brow_inner[side] = e.brow_inner;
  }
  f->brow_arch = id->brow_arch + 0.03f * e.brow_arch;
  f->brow_sq = e.brow_squeeze;

  float open = fg_max(0.0f, e.mouth_open + talk);
  f->open = open;
  f->mouth_y = id->mouth_y + 0.03f * open;
  f->mouth_w = id->mouth_w * (1.0f + 0.28f * e.mouth_width + 0.1f * fg_max(0.0f, e.smile));
  f->mouth_x = 0.03f * (float)s->asym * e.lip_raise_asym;
  /* side 0 is -u, side 1 is +u; the sneer side is sign(asym) */
  for (int side = 0; side < 2; side++) {
    float sg = side ? 1.0f : -1.0f, on = sg * (float)s->asym;
    f->smile[side] = e.smile + on * e.smile_asym;
    f->raise[side] = fg_max(0.0f, e.lip_raise * (1.0f + on * e.lip_raise_asym));
    f->fold[side] = id->fold + 0.3f * e.cheek + 0.2f * e.nose_wrinkle * (1.0f + 0.5f * on) +
                    0.12f * fg_max(0.0f, e.mouth_width);
  }
  f->lu = id->lip_up * (1.0f - 0.7f * e.lip_press);
  f->ll = id->lip_dn * (1.0f - 0.6f * e.lip_press);
  f->nose_y = id->nose_y - 0.03f * e.nose_wrinkle;
  f->wrinkle = e.nose_wrinkle;
  f->crow = e.cheek;
  f->furrow = e.furrow;
  f->forehead = fg_max(0.0f, e.forehead);
}

/* Coverage of a shape at signed distance d (face units, < 0 inside) for
** pixels of ipx per face unit: a one-pixel linear ramp. */
static float fg_cov(float d, float ipx) { return fg_clampf(0.5f - d * ipx, 0.0f, 1.0f); }

/* A soft line of half-width hw at distance d: 1 on it, 0 from hw out. */
static float fg_line(float d, float hw) {
  float a = 1.0f - fabsf(d) / hw;
  return a > 0.0f ? a : 0.0f;
}

/*
** The eyes, lids and brows of one side (sg = -1 or +1) at surface point
** (us, v), drawn over c.
*/
static void fg_eye(const fg_clip *k, const fg_frame *f, int side, float us, float v, float ipx, float *c) {
  const fg_ident *id = &k->id;
  float sg = side ? 1.0f : -1.0f;
  float ex = sg * id->eye_sp, ew = id->eye_w;
  float lx = (us - ex) * sg, ly = v - id->eye_y;
  /* brow */
  float bin = id->eye_sp - ew * 0.75f - f->brow_sq * 0.075f, bout = id->eye_sp + ew * 1.2f;
  float L = bout - bin;
  float bt = (us * sg - bin) / L;
  float by0 = f->brow_y[side];
  if (bt > -0.2f && bt < 1.2f && v > by0 - 0.25f && v < by0 + 0.2f) {
    float tc = fg_clampf(bt, 0.0f, 1.0f), in = f->brow_inner[side];
    float yb = by0 - f->brow_arch * 4.0f * tc * (1.0f - tc) - in * 0.09f * (1.0f - tc) * (1.0f - tc) +
               in * 0.015f * tc;
    float slope = (-f->brow_arch * 4.0f * (1.0f - 2.0f * tc) + in * 0.18f * (1.0f - tc) + in * 0.015f) / L;
    float th = id->brow_th * (1.0f - 0.4f * tc);
    float dx = (bt - tc) * L, dy = (v - yb) / sqrtf(1.0f + slope * slope);
    float d = sqrtf(dx * dx + dy * dy) - th * 0.5f;
    float a = fg_cov(d, ipx * 0.625f) * 0.92f;
    if (a > 0.0f) fg_mixc(c, id->brow, a);
  }
  if (lx < -ew * 1.3f || lx > ew * 1.9f || ly < -0.2f || ly > 0.2f) return;
  float lyy = ly + id->eye_tilt * lx;
  float t = lx / ew;
  float eu = f->eye_up[side], el = f->eye_lo[side];
  /* crow's feet at the outer corner */
  if (f->crow > 0.05f && lx > ew) {
    static const float dirs[3][2] = {{0.906f, -0.423f}, {1.0f, 0.0f}, {0.906f, 0.423f}};
    float qx = lx - ew * 1.08f, qy = lyy;
    for (int i = 0; i < 3; i++) {
      float al = qx * dirs[i][0] + qy * dirs[i][1], pe = -qx * dirs[i][1] + qy * dirs[i][0];
      if (al > 0.0f && al < 0.09f) fg_dark(c, 0.22f * f->crow * fg_line(pe, 0.009f) * (1.0f - al / 0.09f));
    }
  }
  if (t <= -1.05f || t >= 1.05f) return;
  float tt = fg_clampf(t, -1.0f, 1.0f);
  float prof = 1.0f - tt * tt;
  float yu = -eu * prof * (1.6f - 0.6f * prof), yl = el * prof;
  /* socket shading, crease and the fold under the lower lid */
  fg_dark(c, 0.07f * prof * fg_line(lyy + 0.01f, 0.13f));
  float yc = -(id->eye_h * 1.25f + 0.04f) * prof;
  if (yu - 0.02f < yc) yc = yu - 0.02f;
  fg_dark(c, 0.14f * fg_line(lyy - yc, 0.012f) * prof);
  if (f->crow > 0.05f) fg_dark(c, 0.16f * f->crow * fg_line(lyy - yl - 0.04f, 0.014f) * prof);
  /* the opening: sclera, iris, pupil, highlight */
  float dop = fg_max(yu - lyy, lyy - yl);
  float ao = fg_cov(dop, ipx);
  if (ao > 0.0f) {
    float e[3] = {id->sclera[0], id->sclera[1], id->sclera[2]};
    fg_dark(e, 0.12f * (1.0f - prof));
    float ix = us - ex - f->gx, iy = ly + id->eye_h * 0.1f - f->gy;
    float ri = sqrtf(ix * ix + iy * iy), ir = id->iris_r;
    float ai = fg_cov(ri - ir, ipx);
    if (ai > 0.0f) {
      float ic[3] = {id->iris[0], id->iris[1], id->iris[2]};
      fg_dark(ic, 0.45f * fg_smooth((ri / ir - 0.7f) / 0.3f));
      static const float pupil[3] = {14, 12, 12};
      fg_mixc(ic, pupil, fg_cov(ri - ir * 0.42f, ipx));
      float hx = ix + ir * 0.3f, hy = iy + ir * 0.35f;
      static const float white[3] = {250, 250, 250};
      fg_mixc(ic, white, 0.85f * fg_cov(sqrtf(hx * hx + hy * hy) - ir * 0.2f, ipx));
      fg_mixc(e, ic, ai);
    }
    fg_dark(e, 0.3f * fg_line(lyy - yu, 0.045f));
    fg_mixc(c, e, ao);
  }
  /* lash line and lower lid line */
  static const float lash[3] = {28, 20, 18};
  float lw = 0.011f + 0.008f * fg_max(0.0f, tt);
  fg_mixc(c, lash, 0.9f * fg_cov(fabsf(lyy - yu) - lw, ipx));
  fg_dark(c, 0.25f * fg_cov(fabsf(lyy - yl) - 0.005f, ipx));
}

/*
** The nose, its wrinkles and the nasolabial folds at surface point
** (us, v); the nose stands out of the face, so it shifts with yaw.
*/
static void fg_nose(const fg_clip *k, const fg_frame *f, float us, float v, float ipx, float *c) {
  const fg_ident *id = &k->id;
  float nx = us - id->nose_depth * f->tyaw, ny = f->nose_y;
  float ax = fabsf(nx);
  /* folds: from the nose wing to past the mouth corner */
  float y0 = ny, y1 = f->mouth_y + 0.08f;
  if (v > y0 && v < y1 && ax < 0.7f) {
    float s = (v - y0) / (y1 - y0);
    int side = us > 0.0f;
    float x0 = id->nose_w * 0.55f + 0.035f, x1 = f->mouth_w * 1.02f + 0.05f;
    float xf = x0 + (x1 - x0) * s + 0.06f * s * (1.0f - s);
    float taper = fg_min(1.0f, 4.0f * s) * (1.0f - 0.6f * s);
    float dd = fabsf(us) - xf; /* a crease: sharp inside, a soft shadow outside */
    fg_dark(c, fg_min(0.4f, f->fold[side]) * taper * fg_line(dd, dd < 0.0f ? 0.012f : 0.04f));
  }
  /* bridge wrinkles */
  if (f->wrinkle > 0.05f && ax < 0.1f) {
    for (int i = 0; i < 3; i++) {
      float yk = id->eye_y + 0.08f + 0.045f * (float)i + 0.3f * nx * nx;
      fg_dark(c, 0.3f * f->wrinkle * fg_line(v - yk, 0.01f) * (1.0f - ax / 0.1f));
    }
  }
  if (v < ny - 0.2f || v > ny + 0.1f || ax > id->nose_w) return;
  float flare = 1.0f + 0.3f * f->wrinkle;
  /* shadow under the tip and on the side away from the light */
  float tx = nx / (id->nose_w * 0.6f), tyy = (v - ny - 0.035f) / 0.03f;
  fg_dark(c, 0.12f * fg_clampf(1.0f - (tx * tx + tyy * tyy), 0.0f, 1.0f));
  float sx = nx + (k->sn.light[0] > 0.0f ? 0.065f : -0.065f);
  if (v < ny - 0.04f) fg_dark(c, 0.09f * fg_line(sx, 0.03f) * fg_smooth((v - ny + 0.2f) / 0.1f));
  for (int sgi = 0; sgi < 2; sgi++) {
    float sg = sgi ? 1.0f : -1.0f;
    /* wing outline */
    float wx = nx - sg * id->nose_w * 0.5f * flare, wy = v - ny + 0.005f;
    float wr = sqrtf(wx * wx + wy * wy);
    if (wy > -0.03f && sg * wx > -0.015f) fg_dark(c, 0.2f * fg_line(wr - 0.055f * flare, 0.011f));
    /* nostril */
    float rx = 0.034f * flare, ry = 0.017f;
    float qx = (nx - sg * id->nose_w * 0.4f * flare) / rx, qy = (v - ny - 0.015f) / ry;
    float d = (sqrtf(qx * qx + qy * qy) - 1.0f) * ry;
    fg_dark(c, 0.65f * fg_cov(d, ipx));
  }
}

/*
** The mouth at surface point (us, v): a centre line whose corners lift
** with the smile, an opening between two lid-like edges (upper edge raised
** on the sneer side), teeth, and the two lip bands.
*/
static void fg_mouth(const fg_clip *k, const fg_frame *f, float us, float v, float ipx, float *c) {
  const fg_ident *id = &k->id;
  float mw = f->mouth_w, x = us - f->mouth_x;
  float s = x / mw;
  if (s < -1.3f || s > 1.3f || v < f->mouth_y - 0.25f || v > f->mouth_y + 0.45f) return;
  int side = s > 0.0f;
  float sc = fg_clampf(s, -1.0f, 1.0f);
  float yc = f->mouth_y - f->smile[side] * 0.1f * sc * sc;
  float prof = 1.0f - sc * sc, pw = sqrtf(prof);
  /* chin groove and corner shadows */
  fg_dark(c, 0.08f * fg_line(v - (f->mouth_y + f->open * 0.26f + id->lip_dn + 0.07f), 0.025f) * pw);
  float cxd = fabsf(x) - mw * 1.02f, cyd = v - (f->mouth_y - f->smile[side] * 0.1f);
  fg_dark(c, 0.22f * fg_clampf(1.0f - sqrtf(cxd * cxd + cyd * cyd) / 0.025f, 0.0f, 1.0f));
  if (s <= -1.05f || s >= 1.05f) return;
  float rs = (f->raise[0] + (f->raise[1] - f->raise[0]) * fg_smooth(0.5f + sc)) * (1.0f - 0.5f * fabsf(sc));
  float yt = yc - (f->open * 0.05f + rs * 0.07f) * pw;
  float yb = yc + f->open * 0.26f * pw;
  float bow = fg_max(0.0f, 1.0f - (sc / 0.2f) * (sc / 0.2f));
  float ytl = yt - f->lu * pw * (1.0f - 0.3f * bow), ybl = yb + f->ll * pw;
  float al = fg_cov(fg_max(ytl - v, v - ybl), ipx);
  if (al <= 0.0f) return;
  float lc[3] = {id->lip[0], id->lip[1], id->lip[2]};
  if (v > yc) fg_dark(lc, -0.06f * fg_line(v - (yb + f->ll * 0.45f * pw), f->ll * 0.5f + 1e-3f)); /* lower lip sheen */
  fg_mixc(c, lc, al);
  float ac = fg_cov(fg_max(yt - v, v - yb) - 0.008f, ipx);
  if (ac > 0.0f) {
    float m[3] = {52, 20, 24};
    static const float teeth[3] = {236, 230, 214};
    float th = 0.05f * pw * fg_clampf((yb - yt) / 0.03f, 0.0f, 1.0f);
    if (fabsf(sc) < 0.85f) fg_mixc(m, teeth, fg_cov(v - (yt + th), ipx) * (1.0f - fabsf(sc) * 0.4f));
    fg_mixc(c, m, ac);
  }
}

/*
** The albedo of the face at image-space face point (u, v) whose surface
** point is (us, v): skin, blush, forehead lines, furrows, nose, eyes,
** brows, mouth, then the front hair above the hairline.
*/
static void fg_face(const fg_clip *k, const fg_frame *f, float u, float v, float us, float ipx, float *c) {
  const fg_ident *id = &k->id;
  c[0] = id->skin[0], c[1] = id->skin[1], c[2] = id->skin[2];
  float bx = fabsf(us) - 0.5f, by = v - 0.22f;
  float bl = 1.0f - (bx * bx + by * by) / 0.04f;
  if (bl > 0.0f) {
    static const float pink[3] = {220, 90, 100};
    fg_mixc(c, pink, id->blush * bl);
  }
  /* forehead lines (brows up) and the furrows between the brows */
  float byc = 0.5f * (f->brow_y[0] + f->brow_y[1]);
  if (f->forehead > 0.05f && fabsf(us) < 0.55f && v < byc - 0.08f) {
    float fade = 1.0f - (us / 0.55f) * (us / 0.55f);
    for (int i = 0; i < 2; i++) {
      float yk = byc - 0.13f - 0.08f * (float)i + 0.12f * us * us;
      fg_dark(c, 0.2f * f->forehead * fade * fg_line(v - yk, 0.011f));
    }
  }
  if (f->furrow > 0.05f && fabsf(us) < 0.08f) {
    float yk = byc + 0.02f;
    if (v > yk - 0.06f && v < yk + 0.1f) {
      float vt = 1.0f - fabsf(v - yk - 0.02f) / 0.08f;
      for (int sgi = 0; sgi < 2; sgi++) {
        float lx = us - (sgi ? 0.035f : -0.035f) * (1.0f - 0.3f * (v - yk) / 0.1f);
        fg_dark(c, 0.32f * f->furrow * fg_max(0.0f, vt) * fg_line(lx, 0.012f));
      }
    }
  }
  fg_nose(k, f, us, v, ipx, c);
  fg_eye(k, f, us > 0.0f, us, v, ipx, c);
  fg_mouth(k, f, us, v, ipx, c);
  /* front hair: above a curved hairline, and down the temples */
  float hl = id->hairline + 0.22f * us * us + id->hair_part * us;
  float side = fabsf(u) - (0.86f + 0.1f * v);
  float dh = fg_min(v - hl, v < 0.05f ? -side : 1.0f);
  float ah = fg_cov(dh, ipx * 0.667f);
  if (ah > 0.0f) {
    float hc[3] = {id->hair[0], id->hair[1], id->hair[2]};
    fg_dark(hc, 0.12f * (0.5f + 0.5f * sinf(us * id->strand_f + 3.0f * v)));
    fg_mixc(c, hc, ah);
  }
}

/*
** Render frame fi of clip k into out (size * size * 3): background, then
** clothes, neck, back hair, ears, head (face albedo times Lambert
** shading), then tint, flicker and per-pixel noise.
*/
static void fg_render_frame(const fg_clip *k, int fi, uint8_t *out) {
  const fg_ident *id = &k->id;
  const fg_scene *s = &k->sn;
  fg_frame f;
  fg_frame_setup(k, fi, &f);
  int N = k->size;
  float px = 1.0f / f.sc, ipx = f.sc;
  float H = id->H;
  uint64_t nkey = s->noise_key + (uint64_t)fi * 0x9e3779b97f4a7c15ull;
  float namp = s->noise_amp / 104.0f;
  float tint[3] = {s->tint[0] * f.flicker, s->tint[1] * f.flicker, s->tint[2] * f.flicker};
  for (int y = 0; y < N; y++) {
    for (int x = 0; x < N; x++) {
      size_t o = ((size_t)y * (size_t)N + (size_t)x) * 3;
      float c[3] = {k->bg[o], k->bg[o + 1], k->bg[o + 2]};
      float dx = ((float)x + 0.5f - f.cx) * px, dy = ((float)y + 0.5f - f.cy) * px;
      float u = f.cr * dx + f.sr * dy, v = -f.sr * dx + f.cr * dy;
      /* neck, down to the bottom; it turns with the head */
      if (v > 0.3f && fabsf(u) < 0.8f) {
        float nw = 0.46f + 0.08f * fg_max(0.0f, v - H - 0.2f);
        float a = fg_cov(fabsf(u) - nw, ipx);
        if (a > 0.0f) {
          float nc[3] = {id->skin[0] * 0.72f, id->skin[1] * 0.72f, id->skin[2] * 0.72f};
          fg_dark(nc, 0.3f * fg_clampf(1.0f - (v - H + 0.1f) / 0.35f, 0.0f, 1.0f));
          fg_mixc(c, nc, a);
        }
      }
      /* clothes: shoulders below the head (unrotated), with a round or V neckline */
      float sh = dy - (H + 0.5f + 0.12f * dx * dx);
      if (sh > -2.0f * px && fabsf(dx) < 2.6f) {
        float ny = dy - (H + 0.45f), dn;
        if (id->neckline) dn = (fabsf(dx) * 1.1f - (H + 1.05f - dy)) * 0.67f;
        else dn = (sqrtf((dx / 0.5f) * (dx / 0.5f) + (ny / 0.35f) * (ny / 0.35f)) - 1.0f) * 0.35f;
        float cl[3] = {id->cloth[0], id->cloth[1], id->cloth[2]};
        fg_dark(cl, 0.25f * fg_clampf(fabsf(dx) / 2.6f, 0.0f, 1.0f));
        fg_mixc(c, cl, fg_cov(fg_max(-sh, -dn), ipx));
      }
      if (v < -H - 0.4f || v > H + 2.0f || fabsf(u) > 1.4f) goto finish;
      {
        /* back hair: a cap over the head, long hair down the sides */
        float hv = v + 0.1f;
        float hrx = 1.06f + id->hair_vol, hry = H + 0.04f + id->hair_vol;
        float dcap = (sqrtf((u / hrx) * (u / hrx) + (hv / hry) * (hv / hry)) - 1.0f) * hrx;
        if (hv > 0.0f) dcap = fabsf(u) - hrx;
        float dback = fg_max(dcap, v - id->hair_len);
        float ab = fg_cov(dback, ipx * 0.667f);
        if (ab > 0.0f) {
          float hc[3] = {id->hair[0] * 0.78f, id->hair[1] * 0.78f, id->hair[2] * 0.78f};
          fg_dark(hc, 0.15f * (0.5f + 0.5f * sinf(u * id->strand_f * 0.7f + 2.0f * v)));
          fg_mixc(c, hc, ab);
        }
        /* ears, on both sides at eye height */
        for (int sgi = 0; sgi < 2; sgi++) {
          float sg = sgi ? 1.0f : -1.0f;
          float ew = 0.12f * (1.0f - 1.5f * sg * f.syaw);
          if (ew < 0.02f) continue;
          float ex = (u - sg * 0.97f) / ew, ey = (v - id->eye_y - 0.12f) / 0.2f;
          float d = (sqrtf(ex * ex + ey * ey) - 1.0f) * fg_min(ew, 0.2f);
          float a = fg_cov(d, ipx);
          if (a > 0.0f && id->hair_style != 1) {
            float ec[3] = {id->skin[0] * 0.85f, id->skin[1] * 0.85f, id->skin[2] * 0.85f};
            fg_dark(ec, 0.2f * fg_line(sqrtf(ex * ex + ey * ey) - 0.55f, 0.25f));
            fg_mixc(c, ec, a);
          }
        }
        /* the head: an egg, narrower at the chin */
        float aw = fg_max(0.5f, 1.0f - id->taper * v / H);
        float nu = u / aw, nv = v / H;
        float r2 = nu * nu + nv * nv;
        if (r2 < 1.2f) {
          float r = sqrtf(r2);
          float gx = nu / aw, gy = nv / H;
          float gl = sqrtf(gx * gx + gy * gy) / (r + 1e-6f);
          float d = (r - 1.0f) / (gl + 1e-6f);
          float a = fg_cov(d, ipx);
          if (a > 0.0f) {
            float un = fg_clampf(nu, -0.999f, 0.999f);
            float us = (un * f.cyaw - sqrtf(1.0f - un * un) * f.syaw) * aw;
            float fc[3];
            fg_face(k, &f, u, v, us, ipx, fc);
            float nz = sqrtf(fg_max(0.0f, 1.0f - fg_min(r2, 1.0f)));
            float lam = nu * s->light[0] + nv * s->light[1] + nz * s->light[2];
            float shade = (s->amb + (1.0f - s->amb) * fg_max(0.0f, lam)) * (0.82f + 0.18f * nz);
            fc[0] *= shade, fc[1] *= shade, fc[2] *= shade;
            fg_mixc(c, fc, a);
          }
        }
      }
    finish:;
      uint64_t h = fg_mix(nkey + (uint64_t)(y * N + x));
      for (int ch = 0; ch < 3; ch++) {
        float n = (float)((h >> (16 * ch)) & 0xff) + (float)((h >> (16 * ch + 8)) & 0xff) - 255.0f;
        float val = c[ch] * tint[ch] + n * namp + 0.5f;
        out[o + (size_t)ch] = (uint8_t)(val < 0.0f ? 0.0f : val > 255.0f ? 255.0f : val);
      }
    }
  }
}

/* Render a whole clip with a caller-supplied background scratch. */
static void fg_render_clip(uint64_t seed, int label, int frames, int size, uint8_t *out, float *bg) {
  fg_clip k;
  memset(&k, 0, sizeof k);
  k.label = label, k.frames = frames, k.size = size, k.bg = bg;
  fg_draw_ident(seed, &k.id);
  fg_draw_scene(seed, frames, size, &k.sn);
  fg_draw_background(seed, size, bg);
  size_t fb = (size_t)size * (size_t)size * 3;
  for (int i = 0; i < frames; i++) fg_render_frame(&k, i, out + fb * (size_t)i);
}

/* Check the arguments of a clip; messages start with `who`. */
static int fg_check_args(const char *who, int label, int frames, int size, df_err *err) {
  if (label < 0 || label >= DF_FACEGEN_CLASSES)
    return df_err_set(err, DF_EINVAL, "%s: label %d is not a class id (0..%d)", who, label, DF_FACEGEN_CLASSES - 1);
  if (frames < DF_FACEGEN_MIN_FRAMES || frames > DF_FACEGEN_MAX_FRAMES)
    return df_err_set(err, DF_EINVAL, "%s: frames %d is out of range (%d..%d)", who, frames, DF_FACEGEN_MIN_FRAMES,
                      DF_FACEGEN_MAX_FRAMES);
  if (size < DF_FACEGEN_MIN_SIZE || size > DF_FACEGEN_MAX_SIZE)
    return df_err_set(err, DF_EINVAL, "%s: size %d is out of range (%d..%d)", who, size, DF_FACEGEN_MIN_SIZE,
                      DF_FACEGEN_MAX_SIZE);
  return 0;
}

int df_facegen_clip(uint64_t seed, int label, int frames, int size, uint8_t *out, df_err *err) {
  int rc = fg_check_args("facegen", label, frames, size, err);
  if (rc) return rc;
  float *bg = malloc((size_t)size * (size_t)size * 3 * sizeof *bg);
  if (!bg) return df_err_set(err, DF_ENOMEM, "facegen: out of memory");
  fg_render_clip(seed, label, frames, size, out, bg);
  free(bg);
  return 0;
}

/* ------------------------------------------------------------- dataset */

/* mkdir -p: each missing component of path; errors name path. */
static int fg_mkdirs(const char *path, df_err *err) {
  size_t n = strlen(path);
  char *p = malloc(n + 1);
  if (!p) return df_err_set(err, DF_ENOMEM, "%s: out of memory", path);
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char save = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      df_err_set(err, DF_EIO, "%s: cannot create folder: %s", p, strerror(e));
      free(p);
      return DF_EIO;
    }
    p[i] = save;
  }
  free(p);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return df_err_set(err, DF_EIO, "%s: cannot create folder: %s", path, strerror(ENOTDIR));
  return 0;
}

/* Write text to path through path.tmp.<pid> and a rename. */
static int fg_write_text(const char *path, const char *text, df_err *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return df_err_set(err, DF_EIO, "%s: cannot write: %s", path, strerror(errno));
  size_t len = strlen(text);
  int bad = fwrite(text, 1, len, f) != len;
  bad |= fclose(f) != 0;
  if (bad) {
    remove(tmp);
    return df_err_set(err, DF_EIO, "%s: write failed", path);
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return df_err_set(err, DF_EIO, "%s: %s", path, strerror(e));
  }
  return 0;
}

/* The whole of a small file, NUL-terminated; NULL when it cannot be read. */
static char *fg_read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  while (b) {
    size_t r = fread(b + n, 1, cap - 1 - n, f);
    n += r;
    if (r == 0) break;
    if (n + 1 >= cap) {
      if (cap > (1u << 20)) break;
      char *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        b = NULL;
      } else {
        b = nb;
      }
    }
  }
  fclose(f);
  if (b) b[n] = '\0';
  return b;
}

static int fg_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Splits in whole rounds of 7: test ~20%, val ~10%, at least one each. */
static void fg_splits(int clips, int *train_r, int *val_r, int *test_r) {
  int R = clips / DF_FACEGEN_CLASSES;
  int te = (2 * R + 5) / 10, va = (R + 5) / 10;
  if (te < 1) te = 1;
  if (va < 1) va = 1;
  *test_r = te, *val_r = va, *train_r = R - te - va;
}

/* 0 train, 1 val, 2 test for clip i. */
static int fg_split_of(int clips, int i) {
  int tr, va, te;
  fg_splits(clips, &tr, &va, &te);
  int round = i / DF_FACEGEN_CLASSES;
  if (round >= tr + va + te || round < tr) return 0;
  return round < tr + va ? 1 : 2;
}

typedef struct fg_job {
  const char *dir;
  uint64_t seed;
  int clips, frames, size;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int next, done, exited, stop;
  df_err err;
} fg_job;

/*
** A rendering thread: takes the next clip number, renders it and writes
** its frames; the first error stops every thread.
*/
static void *fg_worker(void *arg) {
  fg_job *j = arg;
  size_t fb = (size_t)j->size * (size_t)j->size * 3;
  uint8_t *buf = malloc(fb * (size_t)j->frames);
  float *bg = malloc(fb * sizeof *bg);
  size_t dn = strlen(j->dir) + 64;
  char *path = malloc(dn);
  df_err e = {0};
  if (!buf || !bg || !path) df_err_set(&e, DF_ENOMEM, "%s: out of memory", j->dir);
  for (;;) {
    pthread_mutex_lock(&j->mu);
    if (e.code && !j->err.code) j->err = e;
    if (e.code) j->stop = 1;
    int i = j->stop || j->next >= j->clips ? -1 : j->next++;
    pthread_mutex_unlock(&j->mu);
    if (i < 0) break;
    fg_render_clip(df_facegen_clip_seed(j->seed, i), df_facegen_clip_label(i), j->frames, j->size, buf, bg);
    snprintf(path, dn, "%s/clips/%05d", j->dir, i);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
      df_err_set(&e, DF_EIO, "%s: cannot create folder: %s", path, strerror(errno));
      continue;
    }
    for (int fi = 0; fi < j->frames && !e.code; fi++) {
      snprintf(path, dn, "%s/clips/%05d/%05d.jpg", j->dir, i, fi + 1);
      df_write_jpeg(path, buf + fb * (size_t)fi, j->size, j->size, 90, &e);
    }
    if (e.code) continue;
    pthread_mutex_lock(&j->mu);
    j->done++;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
  }
  pthread_mutex_lock(&j->mu);
  j->exited++;
  pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
  free(buf);
  free(bg);
  free(path);
  return NULL;
}

static int fg_threads(int clips) {
  const char *env = getenv("DFERC_THREADS");
  long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 64) n = 64;
  if (n > clips) n = clips;
  return (int)n;
}

/* A growing string for the CSVs and the manifest. */
typedef struct fg_buf {
  char *p;
  size_t n, cap;
  int oom;
} fg_buf;

__attribute__((format(printf, 2, 3))) static void fg_printf(fg_buf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np, b->cap = cap;
  }
}

static void fg_manifest(fg_buf *b, uint64_t seed, int clips, int frames, int size) {
  int tr, va, te;
  fg_splits(clips, &tr, &va, &te);
  int rem = clips - (tr + va + te) * DF_FACEGEN_CLASSES;
  fg_printf(b, "{\"generator\": \"dferc make-demo-data\", \"version\": %d, \"seed\": %llu, \"clips\": %d, "
            "\"frames\": %d, \"size\": %d, \"train\": %d, \"val\": %d, \"test\": %d, \"classes\": [",
            DF_FACEGEN_VERSION, (unsigned long long)seed, clips, frames, size, tr * DF_FACEGEN_CLASSES + rem,
            va * DF_FACEGEN_CLASSES, te * DF_FACEGEN_CLASSES);
  for (int c = 0; c < DF_FACEGEN_CLASSES; c++) fg_printf(b, "%s\"%s\"", c ? ", " : "", df_facegen_class_names[c]);
  fg_printf(b, "]}\n");
}

static const char fg_readme[] =
    "Synthetic dynamic facial expression clips, written by `dferc make-demo-data`.\n"
    "\n"
    "Each clip is a folder of JPEG frames (clips/NNNNN/00001.jpg, ...) of one\n"
    "procedurally drawn face that starts neutral and moves, from an onset of its\n"
    "own and at a speed of its own, to one of 7 expressions. Identity, skin, hair,\n"
    "clothes, background, lighting, head pose and motion, gaze, blinks and noise are\n"
    "random per clip and independent of the class: only the face's shape and its\n"
    "motion tell the classes apart.\n"
    "\n"
    "  0 happy     mouth corners up and out, mouth a little open, lower lids raised,\n"
    "              crow's feet, deeper nasolabial folds\n"
    "  1 sad       inner brow ends raised, heavy lids, mouth corners down\n"
    "  2 neutral   no expression: idle motion and blinks only\n"
    "  3 angry     brows lowered and drawn in, furrows between them, lips pressed\n"
    "  4 surprise  brows high and arched, eyes wide, jaw dropped, mouth round\n"
    "  5 disgust   nose wrinkled, upper lip raised on one side, brows lowered\n"
    "  6 fear      brows raised and drawn together, eyes wide, mouth stretched wide\n"
    "              and open\n"
    "\n"
    "train.csv, val.csv and test.csv list one clip per line, `PATH LABEL`\n"
    "(space-separated, PATH relative to this folder), as the original's DFEW\n"
    "split files do; every split holds every class. manifest.json records the\n"
    "seed and arguments; the same command with the same arguments gives the same\n"
    "bytes.\n";

/*
** Does dir already hold the dataset whose manifest is `want`?  The
** manifest is written last, so its presence (with the split files and the
** last clip's last frame) means a run finished.
*/
static int fg_complete(const char *dir, const char *want, int clips, int frames) {
  size_t n = strlen(dir) + 64;
  char *p = malloc(n);
  if (!p) return 0;
  snprintf(p, n, "%s/manifest.json", dir);
  char *have = fg_read_text(p);
  int ok = have && strcmp(have, want) == 0;
  free(have);
  static const char *const files[] = {"train.csv", "val.csv", "test.csv", "README.txt"};
  for (int i = 0; ok && i < 4; i++) {
    snprintf(p, n, "%s/%s", dir, files[i]);
    ok = fg_exists(p);
  }
  if (ok) {
    snprintf(p, n, "%s/clips/%05d/%05d.jpg", dir, clips - 1, frames);
    ok = fg_exists(p);
  }
  free(p);
  return ok;
}

int df_facegen_dataset(const char *dir, uint64_t seed, int clips, int frames, int size,
                       df_facegen_progress cb, void *ud, df_facegen_info *info, df_err *err) {
  df_facegen_info inf = {0};
  if (info) *info = inf;
  if (!dir || !*dir) return df_err_set(err, DF_EINVAL, "make-demo-data: no output folder given");
  if (clips < DF_FACEGEN_MIN_CLIPS || clips > DF_FACEGEN_MAX_CLIPS)
    return df_err_set(err, DF_EINVAL, "%s: clips %d is out of range (%d..%d; at least 3 per class, so that "
                      "train, val and test each hold every class)", dir, clips, DF_FACEGEN_MIN_CLIPS,
                      DF_FACEGEN_MAX_CLIPS);
  int rc = fg_check_args(dir, 0, frames, size, err);
  if (rc) return rc;
  int tr, va, te;
  fg_splits(clips, &tr, &va, &te);
  inf.train = clips - (va + te) * DF_FACEGEN_CLASSES;
  inf.val = va * DF_FACEGEN_CLASSES;
  inf.test = te * DF_FACEGEN_CLASSES;

  fg_buf man = {0};
  fg_manifest(&man, seed, clips, frames, size);
  if (man.oom) {
    free(man.p);
    return df_err_set(err, DF_ENOMEM, "%s: out of memory", dir);
  }
  size_t pn = strlen(dir) + 64;
  char *path = malloc(pn);
  fg_buf csv[3] = {{0}};
  if (!path) {
    rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", dir);
    goto done;
  }
  if (fg_complete(dir, man.p, clips, frames)) {
    inf.skipped = 1;
    if (cb) cb(ud, clips, clips);
    goto done;
  }
  if ((rc = fg_mkdirs(dir, err))) goto done;
  snprintf(path, pn, "%s/manifest.json", dir);
  if (remove(path) != 0 && errno != ENOENT) {
    rc = df_err_set(err, DF_EIO, "%s: cannot remove: %s", path, strerror(errno));
    goto done;
  }
  snprintf(path, pn, "%s/clips", dir);
  if ((rc = fg_mkdirs(path, err))) goto done;

  fg_job j;
  memset(&j, 0, sizeof j);
  j.dir = dir, j.seed = seed, j.clips = clips, j.frames = frames, j.size = size;
  pthread_mutex_init(&j.mu, NULL);
  pthread_cond_init(&j.cv, NULL);
  int nt = fg_threads(clips), started = 0;
  pthread_t th[64];
  for (; started < nt; started++)
    if (pthread_create(&th[started], NULL, fg_worker, &j) != 0) break;
  inf.threads = started;
  if (started == 0) {
    rc = df_err_set(err, DF_ERUNTIME, "%s: cannot start a rendering thread", dir);
  } else {
    /* report progress from this thread only: the callback may run Lua */
    int seen = 0;
    pthread_mutex_lock(&j.mu);
    while (j.exited < started || j.done != seen) {
      if (j.done == seen) {
        pthread_cond_wait(&j.cv, &j.mu);
        continue;
      }
      seen = j.done;
      int stop = j.stop;
      pthread_mutex_unlock(&j.mu);
      int cancel = cb && !stop ? cb(ud, seen, clips) : 0;
      pthread_mutex_lock(&j.mu);
      if (cancel && !j.stop) {
        j.stop = 1;
        df_err_set(&j.err, DF_ERUNTIME, "%s: cancelled", dir);
      }
    }
    pthread_mutex_unlock(&j.mu);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (j.err.code) rc = df_err_set(err, j.err.code, "%s", j.err.msg);
  }
  pthread_cond_destroy(&j.cv);
  pthread_mutex_destroy(&j.mu);
  if (rc) goto done;

  for (int i = 0; i < clips; i++)
    fg_printf(&csv[fg_split_of(clips, i)], "clips/%05d %d\n", i, df_facegen_clip_label(i));
  static const char *const names[3] = {"train.csv", "val.csv", "test.csv"};
  for (int s = 0; s < 3 && !rc; s++) {
    if (csv[s].oom) {
      rc = df_err_set(err, DF_ENOMEM, "%s: out of memory", dir);
      break;
    }
    snprintf(path, pn, "%s/%s", dir, names[s]);
    rc = fg_write_text(path, csv[s].p ? csv[s].p : "", err);
  }
  if (!rc) {
    snprintf(path, pn, "%s/README.txt", dir);
    rc = fg_write_text(path, fg_readme, err);
  }
  if (!rc) {
    snprintf(path, pn, "%s/manifest.json", dir);
    rc = fg_write_text(path, man.p, err);
  }
done:
  for (int s = 0; s < 3; s++) free(csv[s].p);
  free(man.p);
  free(path);
  if (info) *info = inf;
  return rc;
}

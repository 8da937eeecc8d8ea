/*
** device.c -- the registry of devices.
*/
#include "config.h"

#include "runtime/device.h"

#include <pthread.h>

#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DFERC_HAVE_CUDA
static const df_device *const devices[] = {&df_device_ref, &df_device_cpu, &df_device_cuda};
static const char *const names[] = {"ref", "cpu", "cuda", NULL};
static const char *const planned[] = {NULL};
#else
static const df_device *const devices[] = {&df_device_ref, &df_device_cpu};
static const char *const names[] = {"ref", "cpu", NULL};
/* Devices this build lacks (configure found no CUDA headers); named here
** so the message is precise. */
static const char *const planned[] = {"cuda", NULL};
#endif

static char dump_dir[1024];
static int dump_set;

void df_set_dump_dir(const char *dir) {
  snprintf(dump_dir, sizeof dump_dir, "%s", dir ? dir : "");
  dump_set = 1;
}

const char *df_dump_dir(void) {
  const char *d = dump_set ? dump_dir : getenv("DFERC_DUMP");
  return d && *d ? d : NULL;
}

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static df_cache *kcache;
static int kcache_opened, kcache_disabled;
static char kcache_path[1024];

void df_set_kernel_cache(int enabled, const char *path) {
  pthread_mutex_lock(&cache_mu);
  kcache_disabled = !enabled;
  snprintf(kcache_path, sizeof kcache_path, "%s", path ? path : "");
  if (kcache_opened) {
    df_cache_close(kcache);
    kcache = NULL;
    kcache_opened = 0;
  }
  pthread_mutex_unlock(&cache_mu);
}

struct df_cache *df_kernel_cache(void) {
  pthread_mutex_lock(&cache_mu);
  if (!kcache_opened) {
    kcache_opened = 1;
    const char *no = getenv("DFERC_NO_CACHE");
    unsigned flags = (kcache_disabled || (no && *no && strcmp(no, "0") != 0)) ? DF_CACHE_DISABLED : 0;
    kcache = df_cache_open(kcache_path[0] ? kcache_path : NULL, flags, NULL);
  }
  df_cache *c = kcache;
  pthread_mutex_unlock(&cache_mu);
  return c;
}

const df_tensor *df_find_feed(const df_node *nd, const df_binding *feeds, int n_feeds, df_err *err) {
  const char *kind = nd->op == DF_OP_PARAM ? "parameter" : "input";
  for (int i = 0; i < n_feeds; i++) {
    if (!feeds[i].name || strcmp(feeds[i].name, nd->attrs.str) != 0) continue;
    const df_tensor *t = feeds[i].tensor;
    int same = t->ndim == nd->ndim && t->dtype == nd->dtype;
    for (int d = 0; same && d < nd->ndim; d++) same = t->shape[d] == nd->shape[d];
    if (!same) {
      char se[160], sg[160];
      df_err_set(err, DF_ESHAPE, "%s '%s': expected %s %s, got %s %s", kind, nd->attrs.str,
                 df_node_shape_str(nd, se, sizeof se), df_dtype_lname(nd->dtype),
                 df_shape_str(sg, sizeof sg, t->ndim, t->shape), df_dtype_lname(t->dtype));
      return NULL;
    }
    return t;
  }
  df_err_set(err, DF_EINVAL, "%s '%s' (%s:%d) was not given a value", kind, nd->attrs.str, nd->file,
             nd->line);
  return NULL;
}

int df_check_outputs(const df_graph *g, const df_node_id *ids, int n, df_tensor **outputs, df_err *err) {
  for (int i = 0; i < n; i++) {
    const df_tensor *t = outputs[i];
    if (!t) continue;
    const df_node *nd = df_graph_node(g, ids[i]);
    int same = t->ndim == nd->ndim && t->dtype == nd->dtype;
    for (int d = 0; same && d < nd->ndim; d++) same = t->shape[d] == nd->shape[d];
    if (!same) {
      char se[160], sg[160];
      return df_err_set(err, DF_ESHAPE, "output %d (%s:%d %s): expected %s %s, was given %s %s", i + 1,
                        nd->file, nd->line, df_op_name(nd->op), df_node_shape_str(nd, se, sizeof se),
                        df_dtype_lname(nd->dtype), df_shape_str(sg, sizeof sg, t->ndim, t->shape),
                        df_dtype_lname(t->dtype));
    }
  }
  return 0;
}

const char *const *df_device_names(void) { return names; }

const df_device *df_device_find(const char *name) {
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++)
    if (strcmp(devices[i]->name, name) == 0) return devices[i];
  return NULL;
}

const df_device *df_device_get(const char *name, df_err *err) {
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++)
    if (strcmp(devices[i]->name, name) == 0) {
      if (devices[i]->available && devices[i]->available(err)) return NULL;
      return devices[i];
    }
  for (size_t i = 0; planned[i]; i++)
    if (strcmp(planned[i], name) == 0) {
      df_err_set(err, DF_EUNSUPPORTED,
                 "device '%s' is not available in this build (devices: ref, cpu)", name);
      return NULL;
    }
  char q[64];
  df_err_set(err, DF_EINVAL, "unknown device '%s' (devices: ref, cpu, cuda)",
             df_err_quote(q, sizeof q, name, strlen(name)));
  return NULL;
}

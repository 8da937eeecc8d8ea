/*
** test_device.c -- the device interface, through the ref device's table.
*/
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "tests/check.h"

static void test_lookup(void) {
  df_err e = {0};
  const df_device *d = df_device_get("ref", &e);
  CHECK(d == &df_device_ref && e.code == 0);
  df_err_clear(&e);
  /* cuda: absent from a build without the CUDA headers; else usable, or
  ** one line saying why not (no driver, no GPU) */
  const df_device *c = df_device_get("cuda", &e);
  if (!c) {
    CHECK(strstr(e.msg, "device 'cuda' is not available in this build") ||
          strcmp(e.msg, "cuda: libcuda.so.1 not found") == 0 || strstr(e.msg, "cuda: no CUDA device (cuInit: "));
    CHECK(strchr(e.msg, '\n') == NULL);
  } else {
    CHECK(strcmp(c->name, "cuda") == 0);
  }
  df_err_clear(&e);
  CHECK(df_device_get("quantum", &e) == NULL);
  CHECK_CONTAINS(e.msg, "unknown device 'quantum'");
  CHECK(strcmp(df_device_names()[0], "ref") == 0);
}

static void test_supports_every_op(void) {
  for (int op = 0; op < DF_OP_COUNT; op++) CHECK(df_device_ref.supports_op((df_op)op));
}

static void test_buffers(void) {
  df_err e = {0};
  float host[5] = {1, 2, 3, 4, 5}, back[5] = {0};
  void *buf = df_device_ref.buffer_alloc(sizeof host, &e);
  CHECK(buf != NULL);
  CHECK(df_device_ref.copy_to_device(buf, host, sizeof host, &e) == 0);
  CHECK(df_device_ref.copy_to_host(back, buf, sizeof back, &e) == 0);
  CHECK(memcmp(host, back, sizeof host) == 0);
  df_device_ref.buffer_free(buf);
}

/* y = x * w + x, through compile/run/stats/free of the table. */
static void test_compile_run(void) {
  df_err e = {0};
  df_graph *g = df_graph_new();
  df_attrs a = {0};
  a.dtype = DF_F32;
  a.ndim = 1;
  a.shape[0] = 3;
  a.str = "x";
  df_node_id x = df_graph_add(g, DF_OP_INPUT, NULL, 0, &a, "t.lua", 1, &e);
  a.str = "w";
  df_node_id w = df_graph_add(g, DF_OP_PARAM, NULL, 0, &a, "t.lua", 2, &e);
  df_node_id xw[2] = {x, w};
  df_node_id m = df_graph_add(g, DF_OP_MUL, xw, 2, NULL, "t.lua", 3, &e);
  df_node_id mx[2] = {m, x};
  df_node_id y = df_graph_add(g, DF_OP_ADD, mx, 2, NULL, "t.lua", 4, &e);
  CHECK(y >= 0);
  df_plan *p = df_device_ref.compile(g, &y, 1, &e);
  CHECK(p != NULL);
  int64_t shape[1] = {3};
  df_tensor *tx = df_tensor_new(DF_F32, 1, shape, &e), *tw = df_tensor_new(DF_F32, 1, shape, &e);
  for (int i = 0; i < 3; i++) {
    ((float *)tx->data)[i] = (float)(i + 1);
    ((float *)tw->data)[i] = 2.0f;
  }
  df_binding feeds[2] = {{"x", tx}, {"w", tw}};
  df_tensor *out = NULL;
  CHECK(df_device_ref.run(p, feeds, 2, &out, &e) == 0);
  CHECK(out && out->dtype == DF_F32 && out->ndim == 1 && out->shape[0] == 3);
  if (out)
    for (int i = 0; i < 3; i++) CHECK(((float *)out->data)[i] == 3.0f * (float)(i + 1));
  df_plan_stats st = {0};
  df_device_ref.plan_stats(p, &st);
  CHECK(st.nodes == 4 && st.peak_bytes > 0);
  df_tensor_unref(out);
  df_tensor_unref(tx);
  df_tensor_unref(tw);
  df_device_ref.plan_free(p);
  df_graph_free(g);
}

int main(void) {
  TEST(test_lookup);
  TEST(test_supports_every_op);
  TEST(test_buffers);
  TEST(test_compile_run);
  return check_exit();
}

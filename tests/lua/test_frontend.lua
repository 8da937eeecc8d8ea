-- Lua front end: nodes, shapes, source locations, error messages, running.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"

local function line() return debug.getinfo(2, "l").currentline end
local here = arg[0]

T.test("shape_error_names_op_shapes_and_line", function()
  local g = df.graph()
  local a = df.input(g, "a", "f32", {2, 3})
  local b = df.input(g, "b", "f32", {4, 5})
  local l
  local msg = T.raises(function() l = line(); local r = df.matmul(a, b); return r end, "matmul: [2, 3] x [4, 5]")
  T.ok(msg:find(here .. ":" .. l .. ": matmul:", 1, true), "message names the script line: " .. msg)
  -- operators too
  local c = df.input(g, "c", "f32", {3, 2})
  msg = T.raises(function() l = line(); local r = a + c; return r end, "add: [2, 3] and [3, 2] do not broadcast")
  T.ok(msg:find(":" .. l .. ": add:", 1, true), "operator error names the line: " .. msg)
end)

T.test("nodes_record_their_line", function()
  local g = df.graph()
  local l = line(); local x = df.input(g, "x", "f32", {2})
  T.eq(x.info.line, l, "line of input")
  T.ok(x.info.file:find("test_frontend.lua", 1, true), "file of input")
  local l2 = line(); local y = df.exp(x) * 2
  T.eq(y.info.line, l2, "line of a derived node")
end)

T.test("dtype_mismatch", function()
  local g = df.graph()
  local a = df.input(g, "a", "f32", {2})
  local b = df.input(g, "b", "i64", {2})
  T.raises(function() return a + b end, "dtypes differ: f32 and i64")
  T.raises(function() return df.exp(b) end, "needs a float tensor, got i64")
end)

T.test("reshape_slice_permute_shapes", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {2, 3, 4})
  T.eq(df.reshape(x, {-1, 4}).shape, {6, 4})
  T.eq(df.slice(x, 1, 1).shape, {2, 2, 4})
  T.eq(df.slice(x, -1, 0, 4, 2).shape, {2, 3, 2})
  T.eq(df.slice(x, 2, -1).shape, {2, 3, 1})
  T.eq(df.permute(x, {2, 0, 1}).shape, {4, 2, 3})
  T.eq(df.sum(x, {0, 2}).shape, {3})
  T.eq(df.mean(x, -1, true).shape, {2, 3, 1})
  T.raises(function() return df.reshape(x, {5, 5}) end, "cannot reshape [2, 3, 4] (24 elements) to [5, 5]")
  T.raises(function() return df.sum(x, 3) end, "axis 3 out of range for rank 3")
end)

T.test("compile_and_run", function()
  local g = df.graph()
  local a = df.input(g, "a", "f32", {2, 2})
  local w = df.param(g, "w", {2, 2})
  local y = df.softmax(df.matmul(a, w) + 1, -1)
  local s = df.sum(a)
  local c = assert(df.compile {outputs = {y = y, s = s}})
  local r = assert(c:run {a = df.host("f32", {2, 2}, {1, 2, 3, 4}), w = df.host("f32", {2, 2}, {1, 0, 0, 1})})
  T.near(r.s:get(1), 10, 0, "sum")
  -- softmax of rows [1+1, 2+1] and [3+1, 4+1]
  local e = 1 / (1 + math.exp(1))
  T.near(r.y:get(1), e, 1e-7, "y[1]")
  T.near(r.y:get(2), 1 - e, 1e-7, "y[2]")
  -- a missing or mis-shaped feed is an error naming it
  local ok, err = c:run {a = df.host("f32", {2, 2})}
  T.ok(not ok and err:find("parameter 'w'", 1, true), "missing feed: " .. tostring(err))
  ok, err = c:run {a = df.host("f32", {3, 2}), w = df.host("f32", {2, 2})}
  T.ok(not ok and err:find("input 'a': expected [2, 2] f32, got [3, 2] f32", 1, true), "bad feed: " .. tostring(err))
end)

T.test("mask_index_runtime_errors_name_the_line", function()
  local g = df.graph()
  local m = df.input(g, "mask", "bool", {1, 4})
  local l = line(); local idx = df.mask_index(m, false, 2)
  local c = assert(df.compile {outputs = {idx}})
  local r = assert(c:run {mask = df.host("bool", {1, 4}, {true, false, true, false})})
  T.eq(r[1]:totable(), {1, 3})
  local ok, err = c:run {mask = df.host("bool", {1, 4}, {true, true, true, false})}
  T.ok(not ok and err:find(":" .. l .. ": mask_index: mask row 0 has 1 visible tokens", 1, true),
    "error: " .. tostring(err))
end)

T.test("check_finite_names_the_first_bad_tensor", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {3})
  local l = line(); local y = df.log(x - 5)
  local plan = assert(df.core.compile(g, {df.sum(df.exp(y))}, "ref"))
  local feeds = {x = df.host("f32", {3}, {6, 7, 2})}
  local r = assert(plan:run(feeds))
  T.ok(r[1]:get(1) ~= r[1]:get(1), "the sum is nan")
  plan:check_finite(true)
  local ok, err = plan:run(feeds)
  T.ok(not ok and err:find("first non-finite tensor: " .. here .. ":" .. l .. ": log [3] holds", 1, true),
    tostring(err))
end)

T.test("host_views_share_memory", function()
  local base = df.host("u8", {64})
  local v = df.core.view(base, 16, "f32", {2, 2})
  v:set(1, 1.5)
  local again = df.core.view(base, 16, "f32", {4})
  T.eq(again:get(1), 1.5, "written through one view, read through another")
  T.raises(function() df.core.view(base, 60, "f32", {2}) end, "does not fit")
  T.raises(function() df.core.view(base, 2, "f32", {1}) end, "does not fit")
  v = nil
  base = nil
  collectgarbage() -- the views keep the base alive; no use after free
  T.eq(again:get(1), 1.5, "the base outlives its owner's reference")
end)

T.test("unknown_device", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {1})
  local c, err = df.compile {outputs = {x}, device = "tpu"}
  T.ok(c == nil and err:find("unknown device 'tpu'", 1, true), tostring(err))
end)

T.test("gelu_is_the_erf_form", function()
  local g = df.graph()
  local x = df.input(g, "x", "f64", {3})
  local c = assert(df.compile {outputs = {df.gelu(x)}})
  local r = assert(c:run {x = df.host("f64", {3}, {-1, 0.5, 2})})
  -- 0.5 x (1 + erf(x / sqrt 2)), values from the definition
  local want = {-0.15865525393145707, 0.34573123063700656, 1.9544997361036416}
  for i = 1, 3 do T.near(r[1]:get(i), want[i], 1e-12, "gelu " .. i) end
end)

T.test("sinusoid_table", function()
  local g = df.graph()
  local c = assert(df.compile {outputs = {df.sinusoid(g, 3, 4)}})
  local r = assert(c:run {})[1]
  -- position 2, column 3 (odd, j//2 = 1): cos(2 / 10000^(2/4))
  T.near(r:get(2 * 4 + 4), math.cos(2 / 100), 1e-7, "pos 2 col 3")
  T.near(r:get(2 * 4 + 1), math.sin(2), 1e-7, "pos 2 col 0")
end)

os.exit(T.done(), true)

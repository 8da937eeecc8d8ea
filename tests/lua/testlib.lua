--[[
tests/lua/testlib.lua -- the assertions of the Lua tests.
  local T = dofile(...)        T.test(name, fn)   T.done()
Inside fn: T.eq(a, b, what), T.near(a, b, tol, what), T.raises(fn, pattern),
T.ok(cond, what).  A failed check ends its test with "not ok NAME: why".
]]
local T = {failed = 0}

local function fail(msg) error({test_failure = msg}, 0) end

function T.ok(cond, what)
  if not cond then fail(what or "condition is false") end
end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return type(v) == "string" and string.format("%q", v) or tostring(v)
end
T.show = show

function T.eq(a, b, what)
  if show(a) ~= show(b) then fail(string.format("%s: got %s, expected %s", what or "value", show(a), show(b))) end
end

function T.near(a, b, tol, what)
  if not (math.abs(a - b) <= tol) then
    fail(string.format("%s: got %.10g, expected %.10g (tolerance %g)", what or "value", a, b, tol))
  end
end

-- fn must raise an error whose message contains `plain` (a plain string).
function T.raises(fn, plain, what)
  local ok, err = pcall(fn)
  if ok then fail((what or "call") .. ": no error raised") end
  local msg = type(err) == "table" and (err.msg or show(err)) or tostring(err)
  if not msg:find(plain, 1, true) then
    fail(string.format("%s: error %q does not contain %q", what or "call", msg, plain))
  end
  return msg
end

function T.test(name, fn)
  local ok, err = pcall(fn)
  if ok then
    print("ok " .. name)
  elseif type(err) == "table" and err.test_failure then
    print("not ok " .. name .. ": " .. err.test_failure)
    T.failed = T.failed + 1
  elseif type(err) == "table" and err.skip then
    print("skip " .. name .. ": " .. err.skip)
  else
    print("not ok " .. name .. ": error: " .. tostring(type(err) == "table" and (err.msg or show(err)) or err))
    T.failed = T.failed + 1
  end
end

function T.skip(why) error({skip = why}, 0) end

-- The fixtures folder, or nil.
function T.fixtures()
  local d = os.getenv("DFERC_FIXTURES")
  if d then
    local f = io.open(d .. "/README.md")
    if f then f:close() return d end
  end
  return nil
end

-- Is a device usable here?  true, or nil and why not (one line).
function T.device_usable(name)
  local df = require "dferc"
  local ok, why = df.core.compile(df.graph(), {}, name)
  if ok then return true end
  return nil, tostring(why)
end

-- The devices a cross-device test runs on: $DFERC_TEST_DEVICES (comma
-- separated), else `default`.
function T.devices(default)
  local env = os.getenv("DFERC_TEST_DEVICES")
  if not env or env == "" then return default end
  local list = {}
  for d in env:gmatch("[^,]+") do list[#list + 1] = d end
  return list
end

-- Is the cpu device usable in this build (LLVM)?
function T.has_cpu()
  local df = require "dferc"
  return df.core.compile(df.graph(), {}, "cpu") ~= nil
end

-- A tiny MAE-DFER config (8 frames of 64x64, regions (2, 2, 4), batch 2)
-- of a kind, with `extra` keys on top.
function T.tiny_config(kind, extra)
  local c = {kind = kind, img = 64, frames = 8, region = {2, 2, 4}, B = 2}
  if kind == "pretrain" then
    c.enc_dim, c.enc_heads, c.enc_depth, c.dec_dim, c.dec_heads, c.dec_depth = 32, 2, 1, 24, 2, 1
    c.win, c.mask_ratio = {2, 4}, 0.75
  else
    c.dim, c.heads, c.depth, c.classes = 32, 2, 1, 5
  end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Feeds for a model built from T.tiny_config: its own initialisation, a
-- random clip, a part-window mask (each 2x4 window of each frame keeps 2
-- tokens) and labels, as the model needs them.
function T.tiny_feeds(m, seed)
  local df = require "dferc"
  local cli = require "dferc.cli"
  local feeds = {}
  for k, p in ipairs(m.params) do feeds[p.name] = cli.init_param(p, k) end
  feeds.videos = df.randn("f32", m.inputs.videos.shape, seed)
  if m.inputs.mask then
    local vals = {}
    for b = 1, 2 do
      for _ = 1, 4 do
        for pos = 0, 15 do vals[#vals + 1] = not (pos % 8 == b or pos % 8 == 5) end
      end
    end
    feeds.mask = df.host("bool", {2, 64}, vals)
  end
  if m.inputs.labels then feeds.labels = df.host("i64", {2}, {1, 4}) end
  return feeds
end

function T.done()
  return T.failed > 0 and 1 or 0
end

return T

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

-- Is the cpu device usable in this build (LLVM)?
function T.has_cpu()
  local df = require "dferc"
  return df.core.compile(df.graph(), {}, "cpu") ~= nil
end

function T.done()
  return T.failed > 0 and 1 or 0
end

return T

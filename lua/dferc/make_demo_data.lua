--[[
dferc.make_demo_data -- `dferc make-demo-data DIR [--seed S] [--clips N]
[--frames F] [--size S] [--quiet]`: render the synthetic dynamic-expression
dataset (dferc.facegen) into DIR.  main(args) returns the exit status; args
is the whole command line after `dferc` (args[1] == "make-demo-data").
Errors that the user caused are printed as one line naming the input, with
status 1.  Progress goes to stderr in steps of 10% (--quiet: none); the
summary line goes to stdout.
]]
local facegen = require "dferc.facegen"
local core = require "dferc.core"

local M = {}

M.USAGE = string.format([[
usage: dferc make-demo-data DIR [--seed S] [--clips N] [--frames F] [--size S] [--quiet]
  render N clips (default %d) of F frames (default %d) of S x S pixels (default %d)
  of procedurally drawn faces moving from neutral to one of 7 expressions (0 happy,
  1 sad, 2 neutral, 3 angry, 4 surprise, 5 disgust, 6 fear) as DIR/clips/NNNNN/*.jpg,
  with DIR/train.csv, val.csv and test.csv ("clips/NNNNN LABEL" per line, about
  70/10/20, every class in every split).  The same arguments give the same bytes;
  a second run with them finds DIR/manifest.json and does nothing.]],
  facegen.defaults.clips, facegen.defaults.frames, facegen.defaults.size)

local function fail(fmt, ...)
  error({msg = string.format(fmt, ...)}, 0)
end

local VALUE = {seed = true, clips = true, frames = true, size = true}

-- "--name value" (or "--name=value") options and one positional DIR.
local function parse(args)
  local opts, pos = {}, {}
  local i = 2
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    if name == "quiet" and not inline then
      opts.quiet = true
    elseif name == "help" then
      opts.help = true
    elseif name then
      if not VALUE[name] then fail("make-demo-data: unknown option --%s (see dferc make-demo-data --help)", name) end
      local v = inline
      if v == nil then
        v = args[i + 1]
        if v == nil then fail("make-demo-data: option --%s needs a value", name) end
        i = i + 1
      end
      local n = math.tointeger(tonumber(v))
      if n == nil or not v:match("^%s*%-?%d+%s*$") then
        fail("make-demo-data: --%s '%s' is not an integer", name, v)
      end
      opts[name] = n
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

local function run(args)
  local opts, pos = parse(args)
  if opts.help then
    print(M.USAGE)
    return 0
  end
  if #pos ~= 1 then
    fail("make-demo-data: %s (usage: dferc make-demo-data DIR [--seed S] [--clips N] [--frames F] [--size S])",
      #pos == 0 and "no output folder given" or "one output folder only, got " .. #pos)
  end
  local dir = pos[1]
  local step = -1
  local t0 = core.clock()
  local ok, info = facegen.dataset(dir, {
    seed = opts.seed, clips = opts.clips, frames = opts.frames, size = opts.size,
    progress = not opts.quiet and function(done, total)
      local s = done * 10 // total
      if s > step and done < total then
        step = s
        io.stderr:write(string.format("make-demo-data: %d/%d clips\n", done, total))
      end
    end or nil,
  })
  if not ok then fail("%s", info) end
  local clips = info.train + info.val + info.test
  local what = string.format("%d clips (%d train, %d val, %d test) of %d frames of %dx%d, seed %d",
    clips, info.train, info.val, info.test, opts.frames or facegen.defaults.frames,
    opts.size or facegen.defaults.size, opts.size or facegen.defaults.size, opts.seed or 0)
  if info.skipped then
    print(string.format("%s: already holds %s; nothing to do", dir, what))
  else
    print(string.format("%s: wrote %s in %.1f s on %d threads", dir, what, core.clock() - t0, info.threads))
  end
  return 0
end

function M.main(args)
  local ok, r = pcall(run, args)
  if ok then return r end
  if type(r) == "table" and r.msg then
    io.stderr:write("dferc: " .. r.msg .. "\n")
    return 1
  end
  error(r, 0)
end

return M

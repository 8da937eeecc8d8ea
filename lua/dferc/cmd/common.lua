--[[
dferc.cmd.common -- what the pretrain / finetune / eval commands share:
flags named after the original's, the data splits, batches of clips
decoded in background threads, the model from --model, progress lines
and the JSONL log.
]]
local df = require "dferc"
local core = df.core
local data = require "dferc.data"

local C = {}

function C.fail(fmt, ...) error({msg = string.format(fmt, ...)}, 0) end

--[[
C.parse(args, spec) -> opts, sets.  spec: flag -> default (a number, a
string, false for a boolean switch, or true for a boolean that defaults
on).  "--flag value" and "--flag=value"; KEY=VALUE pairs (model config
keys, values as JSON) go to sets.
]]
function C.parse(args, spec)
  local opts, sets = {}, {}
  for k, v in pairs(spec) do opts[k] = v end
  local i = 2
  while i <= #args do
    local a = args[i]
    local name, val = a:match("^%-%-([%w_%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w_%-]+)$")
    if name then
      local key = name:gsub("%-", "_")
      if spec[key] == nil then C.fail("%s: unknown option --%s (see dferc help)", args[1], name) end
      if type(spec[key]) == "boolean" and val == nil then
        opts[key] = true
      else
        if val == nil then
          val = args[i + 1]
          if val == nil then C.fail("%s: option --%s needs a value", args[1], name) end
          i = i + 1
        end
        if type(spec[key]) == "number" then
          local n = tonumber(val)
          if not n then C.fail("%s: --%s wants a number, got '%s'", args[1], name, val) end
          opts[key] = n
        else
          opts[key] = val
        end
      end
    elseif a:match("^[%a_][%w_]*=") then
      local k, v = a:match("^([%a_][%w_]*)=(.*)$")
      local j = core.json_decode(v)
      sets[#sets + 1] = {k, j == nil and v or j}
    else
      C.fail("%s: unexpected argument '%s'", args[1], a)
    end
    i = i + 1
  end
  return opts, sets
end

-- "2,5,10" -> {2, 5, 10}
function C.ints(s, n, what)
  local t = {}
  for x in tostring(s):gmatch("[^,%s]+") do t[#t + 1] = math.tointeger(tonumber(x)) end
  if #t ~= n then C.fail("%s must be %d integers separated by commas, got '%s'", what, n, tostring(s)) end
  return t
end

-- The clips of a split: DATA_PATH/NAME.csv -> {{path=, label=}, ...}
function C.split(data_path, name, optional)
  local path = data_path .. "/" .. name .. ".csv"
  local f = io.open(path)
  if not f then
    if optional then return nil end
    C.fail("%s: no such file (--data_path holds train.csv, val.csv, test.csv)", path)
  end
  f:close()
  local items, err = data.read_csv(path)
  if not items then C.fail("%s", err) end
  return items
end

-- The model script (--model, default models/mae_dfer.lua).
function C.script(path)
  if not path or path == "" then return require "mae_dfer", "models/mae_dfer.lua" end
  local chunk, err = loadfile(path)
  if not chunk then C.fail("%s", err) end
  local ok, s = pcall(chunk)
  if not ok then C.fail("%s", tostring(s)) end
  if type(s) ~= "table" or type(s.build) ~= "function" then
    C.fail("%s: a model script must return a table with build(config)", path)
  end
  return s, path
end

-- opts.device: build for it (attention as one op where the device has it).
function C.build(script, cfg, opts)
  if opts.device and opts.fused_attention == nil then
    opts.fused_attention = df.core.supports(opts.device, "attention")
  end
  local ok, checked = pcall(script.check_config or function(c) return c end, cfg, "config")
  if not ok then C.fail("%s", tostring(checked)) end
  local ok2, model = pcall(script.build, checked, opts)
  if not ok2 then C.fail("%s", type(model) == "table" and model.msg or tostring(model)) end
  return model
end

-- A seeded permutation of 1..n (Fisher-Yates on the counter-based stream).
function C.permutation(n, seed)
  local p = {}
  for i = 1, n do p[i] = i end
  local s = seed
  for i = n, 2, -1 do
    s = (s * 6364136223846793005 + 1442695040888963407)
    local j = ((s >> 33) % i) + 1
    p[i], p[j] = p[j], p[i]
  end
  return p
end

--[[
C.batches(items, order, batch, loader_opts, prepare) -> iterator giving
(list of prepared samples, list of their items) per full batch; clips that
fail to decode are skipped (one warning each, counted in the stats).
prepare(frames Host, item, position) -> a sample (e.g. a normalised clip).
]]
function C.batches(items, order, batch, loader_opts, prepare)
  local list = {}
  for i, k in ipairs(order) do list[i] = items[k] end
  local loader = data.loader(list, loader_opts)
  local done = false
  local it = {loader = loader}
  function it.next()
    if done then return nil end
    local samples, which = {}, {}
    while #samples < batch do
      local frames, pos = loader:next()
      if not frames then
        done = true
        return nil
      end
      samples[#samples + 1] = prepare(frames, list[pos], pos)
      which[#which + 1] = list[pos]
    end
    return samples, which
  end
  return it
end

-- A progress line: rewritten in place on a terminal, plain lines otherwise.
local tty = os.getenv("TERM") and os.execute("test -t 1") == true
function C.progress(fmt, ...)
  local line = string.format(fmt, ...)
  if tty then io.stdout:write("\r", line, "\27[K") else io.stdout:write(line, "\n") end
  io.stdout:flush()
end
function C.progress_end() if tty then io.stdout:write("\n") end end

-- Append-only JSONL log in the output folder.
function C.log(output_dir, name)
  local f = assert(io.open(output_dir .. "/" .. name, "a"))
  local json = require("dferc.bench").json
  return function(rec)
    f:write((json(rec):gsub("\n%s*", " ")), "\n")
    f:flush()
  end, f
end

function C.mkdir(dir)
  if not os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") then C.fail("%s: cannot create the folder", dir) end
end

-- "0.9,0.999" -> {0.9, 0.999}
function C.betas(s)
  local a, b = tonumber(s:match("^([^,]+)")), tonumber(s:match(",(.+)$"))
  if not a or not b then C.fail("--opt_betas wants two numbers, as 0.9,0.999; got '%s'", s) end
  return {a, b}
end

--[[
C.start(step, model, o, init_hook) -> first epoch.  With --resume, the
step continues from the checkpoint (weights, optimiser state, step count,
seed) at the epoch after the saved one; otherwise the parameters start
from the model's own initialisation, passed through init_hook (e.g. to
load --finetune weights).
]]
function C.start(step, model, o, init_hook)
  if o.resume ~= "" then
    local meta, err = step:load(o.resume)
    if not meta then C.fail("%s", err) end
    local epoch = (tonumber(meta.epoch) or -1) + 1
    print(string.format("resumed %s at epoch %d, step %d", o.resume, epoch, step.t))
    return epoch
  end
  local cli = require "dferc.cli"
  local init = {}
  for i, p in ipairs(model.params) do init[p.name] = cli.init_param(p, o.seed * 100003 + i) end
  step:set_params(init_hook and init_hook(init) or init)
  -- the initial values were copied into the step's arena: free them now
  -- (Lua's collector does not see the size of host tensors)
  init = nil
  collectgarbage()
  return 0
end

-- Save checkpoint-EPOCH and checkpoint-latest in the output folder.
-- extra: more metadata (strings), saved as user.<key>
function C.save(step, o, epoch, kind, extra)
  local path = string.format("%s/checkpoint-%d.safetensors", o.output_dir, epoch)
  local meta = {epoch = epoch, kind = kind}
  for k, v in pairs(extra or {}) do meta[k] = v end
  for _, target in ipairs {path, o.output_dir .. "/checkpoint-latest.safetensors"} do
    local ok, err = step:save(target, meta)
    if not ok then C.fail("%s", err) end
  end
  print("saved " .. path)
end

function C.fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  return string.format("%d:%02d:%02d", s // 3600, s // 60 % 60, s % 60)
end

return C

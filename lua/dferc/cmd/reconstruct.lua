--[[
dferc reconstruct -- the paper's reconstruction figure for any clips: a
pre-trained checkpoint masks each clip as in pre-training and predicts the
masked tubelets; the PNG shows, per clip, the original frames, the masked
input, the reconstruction, the frame-difference target and the predicted
frame difference (dferc.pictures).

  dferc reconstruct CHECKPOINT CLIP [CLIP ...] [--out reconstruction.png]
                    [--frames_shown 8] [--seed S] [--device D]
                    [--input_size N] [--num_frames N] [--sampling_rate N]
                    [--lg_region_size t,h,w] [--mask_type T] [--mask_ratio R]
                    [--win_size h,w] [--model SCRIPT.lua] [KEY=VALUE ...]

CHECKPOINT is a `dferc pretrain` checkpoint; a CLIP is a video file or a
folder of frames.  The geometry (input size, frames, regions, mask, model
keys) is read from the checkpoint, which records it; the flags override
it, and name it for checkpoints that do not record it.  The frames are
taken as in pre-training (a window of num_frames at sampling_rate, its
start drawn from --seed; the pre-training crop).
]]
local df = require "dferc"
local C = require "dferc.cmd.common"
local cli = require "dferc.cli"

local M = {}

M.flags = {out = "reconstruction.png", frames_shown = 8, seed = 0, device = "", input_size = 0, num_frames = 0,
           sampling_rate = 0, lg_region_size = "", mask_type = "", mask_ratio = -1, win_size = "", model = ""}

-- pre-training's defaults, for what neither the checkpoint nor a flag says
local DEFAULTS = {input_size = 160, num_frames = 16, sampling_rate = 4, lg_region_size = "2,5,10",
                  mask_type = "part_window", mask_ratio = 0.9, win_size = "", model = ""}

-- The positional arguments (CHECKPOINT CLIP ...) out of args; the rest
-- goes to C.parse.
local function positionals(args)
  local pos, rest, i = {}, {args[1]}, 2
  while i <= #args do
    local a = args[i]
    local name = a:match("^%-%-([%w_%-]+)$")
    if name then
      rest[#rest + 1] = a
      local key = name:gsub("%-", "_")
      if M.flags[key] ~= nil and type(M.flags[key]) ~= "boolean" and args[i + 1] then
        rest[#rest + 1] = args[i + 1]
        i = i + 1
      end
    elseif a:match("^%-%-") or (a:match("^[%a_][%w_]*=") and not a:find("/", 1, true)) then
      rest[#rest + 1] = a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, rest
end

--[[
M.geometry(o, sets, recorded) -> geometry: the flags that were given (o,
sets), else the checkpoint's recorded geometry (a table decoded from its
user.geometry), else pre-training's defaults.
]]
function M.geometry(o, sets, recorded)
  recorded = recorded or {}
  local g = {}
  for k, def in pairs(DEFAULTS) do
    local flag = o and o[k]
    local given = flag ~= nil and flag ~= M.flags[k]
    if given then g[k] = flag
    elseif recorded[k] ~= nil then g[k] = recorded[k]
    else g[k] = def end
  end
  g.sets = {}
  for k, v in pairs(recorded.sets or {}) do g.sets[k] = v end
  for _, kv in ipairs(sets or {}) do g.sets[kv[1]] = kv[2] end
  return g
end

--[[
M.render(out, checkpoint, clips, geo, opts) -> info | nil, msg: reconstruct
the clips (paths) with the pre-trained weights of `checkpoint` and write
the PNG `out`.  geo as M.geometry returns; opts.device, opts.seed,
opts.frames_shown, opts.loaded (the checkpoint as dferc.weights.load
returned it, when the caller has it already).  info = {loss = the masked-tubelet MSE over the clips,
clips = n, frames = shown}.
]]
function M.render(out, checkpoint, clips, geo, opts)
  opts = opts or {}
  local W = require "dferc.weights"
  local T = require "dferc.transform"
  local data = require "dferc.data"
  local P = require "dferc.pictures"
  local device = opts.device or cli.fastest_device()
  local seed = opts.seed or 0
  local region = C.ints(geo.lg_region_size, 3, "--lg_region_size")
  local win = geo.win_size ~= "" and C.ints(geo.win_size, 2, "--win_size") or {region[2], region[3]}
  local cfg = {kind = "pretrain", B = #clips, img = math.tointeger(geo.input_size),
               frames = math.tointeger(geo.num_frames), region = region, mask = geo.mask_type, win = win,
               mask_ratio = geo.mask_ratio}
  for k, v in pairs(geo.sets) do cfg[k] = v end
  local script = C.script(geo.model)
  local model = C.build(script, cfg, {device = device})
  local loaded, lerr = opts.loaded, nil
  if not loaded then loaded, lerr = W.load(checkpoint) end
  if not loaded then return nil, lerr end
  local feeds = {}
  for _, p in ipairs(model.params) do
    local t = loaded.tensors[p.name]
    if not t then
      return nil, string.format("%s: no tensor '%s' (is it a pre-training checkpoint of this geometry?)", checkpoint,
        p.name)
    end
    if table.concat(t.shape, ",") ~= table.concat(p.shape, ",") then
      return nil, string.format("%s: '%s' is [%s], the model wants [%s] (the geometry or the model keys differ)",
        checkpoint, p.name, table.concat(t.shape, ", "), table.concat(p.shape, ", "))
    end
    feeds[p.name] = t
  end
  local g = model.geometry
  local vids, masks = {}, {}
  for i, path in ipairs(clips) do
    local clip, cerr = data.open_clip(path)
    if not clip then return nil, cerr end
    local idx = data.sample_pretrain(clip:count(), seed, cfg.frames, math.tointeger(geo.sampling_rate))
    local frames, rerr = clip:read(idx)
    clip:close()
    if not frames then return nil, rerr end
    vids[i] = T.pretrain(frames, seed + i, cfg.img)
    masks[i] = T.mask(geo.mask_type, g.t, g.h, g.w, geo.mask_ratio, win[1], win[2], seed + 10 + i)
  end
  feeds.videos, feeds.mask = df.stack(vids), df.stack(masks)
  local c, err = df.compile {outputs = {d = model.outputs.decoder_out, loss = model.outputs.loss}, device = device}
  if not c then return nil, err end
  local res, rerr = c:run(feeds)
  if not res then return nil, rerr end
  local shown = math.min(opts.frames_shown or 8, cfg.frames)
  local ok, perr = P.reconstruction(out, feeds.videos, feeds.mask, res.d, g, {clips = #clips, frames = shown})
  if not ok then return nil, perr end
  return {loss = res.loss:totable()[1], clips = #clips, frames = shown}
end

function M.main(args)
  local pos, rest = positionals(args)
  local o, sets = C.parse(rest, M.flags)
  if #pos < 2 then C.fail("reconstruct: usage: dferc reconstruct CHECKPOINT CLIP [CLIP ...] [--out PNG]") end
  local ckpt = table.remove(pos, 1)
  local loaded, err = require("dferc.weights").load(ckpt)
  if not loaded then C.fail("%s", err) end
  local md = loaded.metadata or {}
  local recorded
  if md["user.geometry"] then
    recorded = df.json_decode(md["user.geometry"])
    if type(recorded) ~= "table" then C.fail("%s: its recorded geometry is not a JSON object", ckpt) end
  end
  local geo = M.geometry(o, sets, recorded)
  local device = o.device ~= "" and o.device or cli.fastest_device()
  local info, rerr = M.render(o.out, ckpt, pos, geo, {device = device, seed = math.tointeger(o.seed) or 0,
                                                      frames_shown = math.tointeger(o.frames_shown) or 8,
                                                      loaded = loaded})
  if not info then C.fail("%s", rerr) end
  print(string.format("wrote %s: %d clip(s), %d frames each, %dx%d, %s mask %.2f; masked-tubelet loss %.4f", o.out,
    info.clips, info.frames, geo.input_size, geo.input_size, geo.mask_type, geo.mask_ratio, info.loss))
  return 0
end

return M

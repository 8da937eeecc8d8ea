--[[
dferc.pictures -- what the demo shows a person: reconstruction pictures in
the style of the paper's figure, and training curves.

P.reconstruction(path, videos, mask, decoder_out, geometry, opts) writes a
PNG with one band per clip of five rows over the clip's frames: the
original frames, the masked input (masked tubelets grey), the
reconstruction (visible tubelets as they are; masked ones predicted, their
per-patch normalisation undone with the original patch's statistics), the
frame-difference target and the predicted frame difference (second frame
of each tubelet minus the first, mid-grey = no change).
P.curves(path, series) writes an SVG of loss and learning rate per step.
]]
local df = require "dferc"
local data = require "dferc.data"

local P = {}

local MEAN = {0.485, 0.456, 0.406}
local STD = {0.229, 0.224, 0.225}

local function clamp255(v)
  v = math.floor(v * 255 + 0.5)
  return v < 0 and 0 or (v > 255 and 255 or v)
end

--[[
videos: Host f32 [B, 3, T, S, S] (normalised); mask: Host bool [B, N];
decoder_out: Host f32 [B, Nm, 1536] (masked tubelets in token order, each
(frame, row, col, channel) over its 2 frames of 16 x 16 pixels); g: the
model geometry (t, h, w).  opts.clips (2), opts.frames (8): how many.
]]
function P.reconstruction(path, videos, mask, dec, g, opts)
  opts = opts or {}
  local B, T, S = videos.shape[1], videos.shape[3], videos.shape[4]
  local nclips = math.min(opts.clips or 2, B)
  local nframes = math.min(opts.frames or 8, T)
  local fstep = math.max(1, T // nframes)
  local rows, gap = 5, 2
  local W = nframes * (S + gap)
  local H = nclips * (rows * (S + gap) + 6)
  local img = df.host("u8", {H, W, 3}, 255)
  local N = g.t * g.h * g.w
  local Nm = dec.shape[2]
  local vals = videos:totable()
  local mvals = mask:totable()
  local dvals = dec:totable()
  local function pix(b, c, t, y, x) return vals[(((b * 3 + c) * T + t) * S + y) * S + x + 1] end
  local function put(px, py, r, gg, bb)
    local k = (py * W + px) * 3
    img:set(k + 1, r); img:set(k + 2, gg); img:set(k + 3, bb)
  end
  for b = 0, nclips - 1 do
    -- which masked slot holds each token
    local slot, m = {}, 0
    for n = 0, N - 1 do
      if mvals[b * N + n + 1] ~= 0 then slot[n] = m; m = m + 1 end
    end
    -- per tubelet and channel: mean and std (unbiased) of the original pixels
    local function stats(tt, ty, tx, c)
      local s, s2, cnt = 0, 0, 0
      for f = 0, 1 do
        for y = 0, 15 do
          for x = 0, 15 do
            local v = pix(b, c, tt * 2 + f, ty * 16 + y, tx * 16 + x) * STD[c + 1] + MEAN[c + 1]
            s, s2, cnt = s + v, s2 + v * v, cnt + 1
          end
        end
      end
      local mu = s / cnt
      return mu, math.sqrt(math.max(0, (s2 - cnt * mu * mu) / (cnt - 1)))
    end
    local cache = {}
    local y0 = b * (rows * (S + gap) + 6)
    for fi = 0, nframes - 1 do
      local t = fi * fstep
      local x0 = fi * (S + gap)
      for y = 0, S - 1 do
        for x = 0, S - 1 do
          local tt, ty, tx = t // 2, y // 16, x // 16
          local tok = (tt * g.h + ty) * g.w + tx
          local f = t % 2
          local orig, recon = {}, {}
          local diff_t, diff_p = 0, 0
          for c = 0, 2 do
            orig[c + 1] = pix(b, c, t, y, x) * STD[c + 1] + MEAN[c + 1]
            local first = pix(b, c, tt * 2, y, x) * STD[c + 1] + MEAN[c + 1]
            local second = pix(b, c, tt * 2 + 1, y, x) * STD[c + 1] + MEAN[c + 1]
            local key = tok * 3 + c
            if not cache[key] then cache[key] = {stats(tt, ty, tx, c)} end
            local mu, sd = cache[key][1], cache[key][2]
            diff_t = diff_t + ((second - mu) - (first - mu)) / (sd + 1e-6) / 3
            if slot[tok] then
              local base = slot[tok] * 1536
              local p0 = dvals[b * Nm * 1536 + base + ((0 * 16 + y % 16) * 16 + x % 16) * 3 + c + 1]
              local pd = dvals[b * Nm * 1536 + base + ((1 * 16 + y % 16) * 16 + x % 16) * 3 + c + 1]
              local pn = f == 0 and p0 or p0 + pd
              recon[c + 1] = pn * (sd + 1e-6) + mu
              diff_p = diff_p + pd / 3
            else
              recon[c + 1] = orig[c + 1]
              diff_p = diff_p + ((second - mu) - (first - mu)) / (sd + 1e-6) / 3
            end
          end
          local masked = slot[tok] ~= nil
          local band = {
            {clamp255(orig[1]), clamp255(orig[2]), clamp255(orig[3])},
            masked and {128, 128, 128} or {clamp255(orig[1]), clamp255(orig[2]), clamp255(orig[3])},
            {clamp255(recon[1]), clamp255(recon[2]), clamp255(recon[3])},
          }
          local dt, dp = clamp255(0.5 + diff_t * 0.25), clamp255(0.5 + diff_p * 0.25)
          band[4] = {dt, dt, dt}
          band[5] = {dp, dp, dp}
          for r = 1, rows do
            local c = band[r]
            put(x0 + x, y0 + (r - 1) * (S + gap) + y, c[1], c[2], c[3])
          end
        end
      end
    end
  end
  return data.write_png(path, img)
end

-- series: {{name =, steps = {...}, loss = {...}, lr = {...}}, ...}
function P.curves(path, series, title)
  local Wd, Ht, pad = 900, 420, 50
  local colors = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
  local out = {string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">', Wd, Ht),
               '<rect width="100%" height="100%" fill="white"/>',
               string.format('<text x="%d" y="20" font-size="15">%s</text>', pad, title or "training curves")}
  local function panel(x0, key, label)
    local pw = (Wd - 3 * pad) / 2
    local ph = Ht - 2 * pad - 20
    local y0 = pad + 20
    local maxx, lo, hi = 1, math.huge, -math.huge
    for _, s in ipairs(series) do
      maxx = math.max(maxx, #s[key])
      for _, v in ipairs(s[key]) do
        if v == v then lo = math.min(lo, v); hi = math.max(hi, v) end
      end
    end
    if lo == math.huge then lo, hi = 0, 1 end
    if hi == lo then hi = lo + 1 end
    out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>', x0, y0, pw, ph)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f">%s</text>', x0, y0 - 6, label)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f">%.3g</text><text x="%.1f" y="%.1f">%.3g</text>',
      x0 + 2, y0 + 12, hi, x0 + 2, y0 + ph - 2, lo)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f">step %d</text>', x0 + pw - 60, y0 + ph + 15, maxx)
    for i, s in ipairs(series) do
      local pts = {}
      for j, v in ipairs(s[key]) do
        if v == v then
          pts[#pts + 1] = string.format("%.1f,%.1f", x0 + (j - 1) / math.max(1, maxx - 1) * pw, y0 + ph - (v - lo) / (hi - lo) * ph)
        end
      end
      out[#out + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>',
        colors[(i - 1) % #colors + 1], table.concat(pts, " "))
      out[#out + 1] = string.format('<text x="%.1f" y="%.1f" fill="%s">%s</text>', x0 + 10, y0 + 28 + 14 * i,
        colors[(i - 1) % #colors + 1], s.name)
    end
  end
  panel(pad, "loss", "loss")
  panel(2 * pad + (Wd - 3 * pad) / 2, "lr", "learning rate")
  out[#out + 1] = "</svg>"
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(table.concat(out, "\n"), "\n")
  f:close()
  return true
end

-- The series of a JSONL training log.
function P.read_log(path, name)
  local s = {name = name, loss = {}, lr = {}}
  local f = io.open(path)
  if not f then return s end
  for line in f:lines() do
    local r = df.json_decode(line)
    if type(r) == "table" and r.loss then
      s.loss[#s.loss + 1] = r.loss
      s.lr[#s.lr + 1] = r.lr or 0
    end
  end
  f:close()
  return s
end

return P

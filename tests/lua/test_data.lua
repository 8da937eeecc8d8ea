-- dferc.data from Lua: annotation files, clips, the sampling rules and the
-- loader.  The inputs (PNG frames, annotation files) are written here, in
-- a fresh folder under /tmp that is removed at the end.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local data = require "dferc.data"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A minimal RGB PNG: one stored (uncompressed) deflate block.
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) ~= 0 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
local function chunk(kind, body) return string.pack(">I4", #body) .. kind .. body .. string.pack(">I4", crc32(kind .. body)) end
local function png(w, h, pixel) -- pixel(x, y) -> r, g, b
  local rows = {}
  for y = 0, h - 1 do
    local r = {"\0"}
    for x = 0, w - 1 do r[#r + 1] = string.char(pixel(x, y)) end
    rows[#rows + 1] = table.concat(r)
  end
  local raw = table.concat(rows)
  local a, b = 1, 0
  for i = 1, #raw do a = (a + raw:byte(i)) % 65521; b = (b + a) % 65521 end
  local z = "\x78\x01\x01" .. string.pack("<I2<I2", #raw, (~#raw) & 0xFFFF) .. raw .. string.pack(">I4", (b << 16) | a)
  return "\x89PNG\r\n\x1a\n" .. chunk("IHDR", string.pack(">I4>I4BBBBB", w, h, 8, 2, 0, 0, 0))
      .. chunk("IDAT", z) .. chunk("IEND", "")
end

-- frames/00000.png .. 00004.png, 4 x 2: pixel (x, y) of frame f is (f * 40 + x, y * 100, 7)
local frames = dir .. "/frames"
os.execute("mkdir '" .. frames .. "'")
for f = 0, 4 do
  write(string.format("%s/%05d.png", frames, f), png(4, 2, function(x, y) return f * 40 + x, y * 100, 7 end))
end
write(frames .. "/notes.txt", "ignored")

T.test("read_csv", function()
  write(dir .. "/train.csv", "frames 3\n\n# comment\r\n/abs/clip 0\r\n")
  local list = assert(data.read_csv(dir .. "/train.csv"))
  T.eq(#list, 2, "entries")
  T.eq(list[1].path, frames, "relative path resolved against the file's folder")
  T.eq(list[1].label, 3, "label")
  T.eq(list[2].path, "/abs/clip", "absolute path")
  T.eq(list[2].line, 4, "line")
  write(dir .. "/bad.csv", "a 1\nb x\n")
  local ok, msg = data.read_csv(dir .. "/bad.csv")
  T.eq(ok, nil)
  T.ok(msg:find("bad.csv:2: label 'x' is not a non-negative integer", 1, true), msg)
  ok, msg = data.read_csv(dir .. "/none.csv")
  T.ok(ok == nil and msg:find("none.csv: cannot open", 1, true), msg)
end)

T.test("clip_read", function()
  local c = assert(data.open_clip(frames))
  T.eq(c:count(), 5, "count")
  T.eq({c:size()}, {4, 2}, "size")
  T.eq(c:is_video(), false)
  T.ok(tostring(c):find("5 frames, 4x2", 1, true), tostring(c))
  local h = assert(c:read({3, 0, 3}))
  T.eq(h.shape, {3, 2, 4, 3}, "shape")
  T.eq(h.dtype, "u8")
  -- element (t, y, x, ch) is at 1 + ((t * 2 + y) * 4 + x) * 3 + ch
  local function at(t, y, x, ch) return h:get(1 + ((t * 2 + y) * 4 + x) * 3 + ch) end
  T.eq({at(0, 0, 0, 0), at(0, 0, 2, 0), at(0, 1, 2, 1), at(0, 1, 2, 2)}, {120, 122, 100, 7}, "frame 3")
  T.eq({at(1, 0, 1, 0), at(1, 1, 3, 0)}, {1, 3}, "frame 0")
  T.eq(at(2, 1, 3, 0), at(0, 1, 3, 0), "repeat")
  local ok, msg = c:read({5})
  T.ok(ok == nil and msg:find("frame index 5 is out of range (the clip has 5 frames)", 1, true), msg)
  T.raises(function() return c:read({1.5}) end, "read: entry 1 is not an integer")
  c:close()
  T.raises(function() return c:count() end, "clip is closed")
  T.eq(tostring(c), "Clip(closed)")
  do
    local d <close> = assert(data.open_clip(frames .. "/00001.png"))
    T.eq(d:count(), 1, "a single image is a one-frame clip")
  end
end)

T.test("clip_errors", function()
  local ok, msg = data.open_clip(dir .. "/missing")
  T.ok(ok == nil and msg:find("missing: No such file or directory", 1, true), msg)
  os.execute("mkdir '" .. dir .. "/empty'")
  ok, msg = data.open_clip(dir .. "/empty")
  T.ok(ok == nil and msg:find("empty: no JPEG or PNG frames in the folder", 1, true), msg)
  write(dir .. "/junk.mp4", "not a video")
  ok, msg = data.open_clip(dir .. "/junk.mp4")
  T.ok(ok == nil and msg:find("junk.mp4: cannot open as a video", 1, true), msg)
end)

T.test("sampling", function()
  T.eq(data.sample_train(10, 1), {0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, "train n=10")
  T.eq(data.sample_train(64, 1), {0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63}, "train n=64")
  local a, b = data.sample_train(300, 42), data.sample_train(300, 42)
  T.eq(a, b, "same seed, same indices")
  T.eq(a[16] - a[1], 63, "a 64-frame window")
  local t = data.sample_test(100, 3)
  T.eq(#t, 3, "segments")
  T.eq({t[1][1], t[2][1], t[3][1], t[3][16]}, {0, 16, 36, 96}, "test starts 0, 4, 9 of every 4th frame")
  T.eq(data.sample_pretrain(10, 0), {0, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8}, "pretrain n=10")
  T.eq(#data.sample_train(100, 0, 8, 2), 8, "clip_len 8")
  T.raises(function() return data.sample_train(0, 1) end, "a clip of 0 frames has nothing to sample")
end)

T.test("loader", function()
  local items = {
    frames,                                    -- sample "train" (the default)
    {path = frames, frames = {4, 0}},
    dir .. "/missing",                         -- skipped
    {path = frames, sample = "test", segment = 1},
  }
  local l <close> = data.loader(items, {workers = 2, seed = 5, quiet = true})
  local got = {}
  while true do
    local h, i = l:next()
    if not h then break end
    got[#got + 1] = {i, h.shape[1]}
  end
  T.eq(got, {{1, 16}, {2, 2}, {4, 16}}, "items in order, the missing one skipped")
  local st = l:stats()
  T.eq({st.items, st.skipped}, {3, 1}, "counts")
  T.ok(st.waited_s >= 0 and st.held_s >= 0, "times")
  T.eq(l:next(), nil, "stays at the end")
  l:close()
  T.raises(function() return l:next() end, "loader is closed")
  -- the frames of item 2 are frames 4 and 0
  local l2 = data.loader({{path = frames, frames = {4, 0}}}, {workers = 0})
  local h = l2:next()
  T.eq({h:get(1), h:get(1 + 2 * 4 * 3)}, {160, 0}, "frames 4, 0")
  l2:close()
end)

T.test("loader_misuse_and_early_close", function()
  T.raises(function() return data.loader({42}) end, "loader: item 1 is not a path or a table")
  T.raises(function() return data.loader({{frames = {0}}}) end, "loader: item 1 has no path string")
  T.raises(function() return data.loader({frames}, {sample = "x"}) end, "sample must be 'train', 'pretrain' or 'test', got x")
  T.raises(function() return data.loader({frames}, {workers = -1}) end, "option workers must be an integer in [0, 64]")
  T.raises(function() return data.loader({{path = frames, sample = "test", segment = 2}}) end, "option segment")
  local many = {}
  for i = 1, 200 do many[i] = frames end
  local l = data.loader(many, {workers = 4, depth = 4})
  T.ok(l:next() ~= nil, "first item")
  l:close() -- workers busy and the queue full: must return
  local l3 = data.loader(many, {workers = 3})
  l3 = nil -- collected with its workers running
  collectgarbage()
  collectgarbage()
end)

os.execute("rm -rf '" .. dir .. "'")
return T.done()

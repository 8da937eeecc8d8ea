--[[
dferc.cache_cli -- `dferc cache stats|list|clear|explain`: look into the
kernel cache.  main(args) returns the exit status; args is the command line
after `dferc` (args[1] == "cache") or after `dferc cache`.  Errors that the
user caused are printed as one line naming the input, with status 1.

  dferc cache stats   [--cache DB] [--no-cache]   path, entries, bytes, hits, misses
  dferc cache list    [--cache DB]                one line per entry, in key order;
                      the tuning field first, and for a tuned winner (tuning=winner)
                      its configuration and the winner's median time [spread]
  dferc cache clear   [--cache DB]                remove every entry (says how many)
  dferc cache explain KEY=VALUE ... [--cache DB]  why a key misses: the nearest
                      entry and each field that differs (fields not given are
                      not compared)

The database is --cache DB, else $DFERC_CACHE, else
$XDG_CACHE_HOME/dferc/kernels.db, else ~/.cache/dferc/kernels.db.
]]
local cache = require "dferc.cache"
local core = require "dferc.core"

local M = {}

M.USAGE = [[
usage: dferc cache stats|list|clear|explain [KEY=VALUE ...] [--cache DB] [--no-cache]
  stats    the database's path, entries, bytes, hits and misses
  list     one line per entry: key (tuning first; a tuned winner's configuration
           and time), size, hits, last use
  clear    remove every entry
  explain  KEY=VALUE ...: why that key misses: the nearest entry and the
           fields that differ (fields: ]] .. table.concat(cache.fields, ", ") .. [[)
The database is --cache DB, $DFERC_CACHE, $XDG_CACHE_HOME/dferc/kernels.db or
~/.cache/dferc/kernels.db.]]

local function fail(fmt, ...)
  error({msg = string.format(fmt, ...)}, 0)
end

local is_field = {}
for _, f in ipairs(cache.fields) do is_field[f] = true end

-- "--cache DB", "--no-cache" and KEY=VALUE pairs (values are raw text).
local function parse(args, first)
  local opts, key, nkey, pos = {}, {}, 0, {}
  local i = first
  while i <= #args do
    local a = args[i]
    if a == "--cache" then
      if args[i + 1] == nil then fail("cache: option --cache needs a value") end
      opts.cache = args[i + 1]
      i = i + 1
    elseif a == "--no-cache" then
      opts.no_cache = true
    elseif a:match("^%-%-") then
      fail("cache: unknown option %s (see dferc cache help)", a)
    elseif a:match("^[%a_][%w_]*=") then
      local k, v = a:match("^([%a_][%w_]*)=(.*)$")
      if not is_field[k] then
        fail("cache: unknown key field '%s' (fields: %s)", k, table.concat(cache.fields, ", "))
      end
      if key[k] == nil then nkey = nkey + 1 end
      key[k] = v
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, key, nkey, pos
end

local function open(opts)
  local c, err = cache.open(opts.cache, {disabled = opts.no_cache})
  if not c then fail("%s", err) end
  return c
end

local function human(n)
  if n < 1024 then return string.format("%d B", n) end
  if n < 1024 * 1024 then return string.format("%.1f KiB", n / 1024) end
  if n < 1024 * 1024 * 1024 then return string.format("%.1f MiB", n / 1048576) end
  return string.format("%.2f GiB", n / 1073741824)
end

-- A field value on one line: bare when plain, else quoted with escapes.
local function quote(v)
  if v:match("^[%w%._%-+=/:,@]+$") then return v end
  return (string.format("%q", v):gsub("\\\n", "\\n"))
end

local function when(t)
  return os.date("%Y-%m-%d %H:%M:%S", t)
end

local function plural(n, one, many)
  return string.format("%d %s", n, n == 1 and one or many)
end

local function stats(c)
  local s, err = c:stats()
  if not s then fail("%s", err) end
  print(string.format("path     %s", s.path))
  print(string.format("mode     %s", s.mode))
  print(string.format("entries  %d", s.entries))
  print(string.format("bytes    %d (%s)", s.bytes, human(s.bytes)))
  if s.mode == "file" then print(string.format("file     %d (%s)", s.file_bytes, human(s.file_bytes))) end
  print(string.format("hits     %d", s.hits))
  print(string.format("misses   %d", s.misses))
  return 0
end

-- A tuned winner's times (JSON, see compiler/tune.h) in a few words:
-- "0.0123 ms [0.0119..0.0131], 7 candidates, 1 rejected".
local function times_summary(config, times)
  local ok, t = pcall(core.json_decode, times)
  if not ok or type(t) ~= "table" or type(t.candidates) ~= "table" then return nil end
  local win, rejected = nil, 0
  for _, c in ipairs(t.candidates) do
    if c.rejected or c.failed then rejected = rejected + 1 end
    if c.config == config and c.median_s and (not win or c.median_s < win.median_s) then win = c end
  end
  local s = win and string.format("%.4g ms [%.4g..%.4g], ", win.median_s * 1e3, win.min_s * 1e3, win.max_s * 1e3) or ""
  return s .. plural(#t.candidates, "candidate", "candidates") .. ", " .. rejected .. " rejected"
end

local function list(c)
  local rows, err = c:list()
  if not rows then fail("%s", err) end
  for _, r in ipairs(rows) do
    local rest = {}
    for _, f in ipairs(cache.fields) do
      if f ~= "ir_hash" and f ~= "backend" and f ~= "tuning" then rest[#rest + 1] = f .. "=" .. quote(r[f]) end
    end
    -- the tuning fields first: the key's, and a tuned winner's choice and times
    local tune = "tuning=" .. quote(r.tuning)
    if r.tuning == "winner" or r.tuning == "gemm-winner" then
      tune = tune .. " config=" .. quote(r.config or "")
      local t = times_summary(r.config, r.times or "")
      if t then tune = tune .. " (" .. t .. ")" end
    end
    print(string.format("%s %s %s %d bytes, %s, used %s: %s", r.ir_hash, quote(r.backend), tune, r.size,
      plural(r.hits, "hit", "hits"), when(r.used), table.concat(rest, " ")))
  end
  return 0
end

local function clear(c)
  local n, err = c:clear()
  if not n then fail("%s", err) end
  print(string.format("cleared %s: removed %s", c:path(), plural(n, "entry", "entries")))
  return 0
end

local function explain(c, key, nkey)
  if nkey == 0 then
    fail("cache explain: give the key as KEY=VALUE (fields: %s)", table.concat(cache.fields, ", "))
  end
  local ok, x, err = pcall(c.explain, c, key)
  if not ok then fail("%s", tostring(x)) end
  if not x then fail("%s", err) end
  local path = c:path()
  if x.status == "disabled" then
    print("miss: the cache is disabled (--no-cache)")
  elseif x.status == "empty" then
    print(string.format("miss: %s holds no entries", path))
  elseif x.status == "hit" then
    print(string.format("hit: %s has an entry for this key (%d bytes, %s, used %s)", path, x.size,
      plural(x.hits, "hit", "hits"), when(x.used)))
  elseif x.status == "invalid" then
    print(string.format("miss: %s has an entry for this key, but it is damaged (%s); "
      .. "the next store replaces it", path, x.reason or "?"))
  else
    local same = key.ir_hash and x.nearest.ir_hash == key.ir_hash
    print(string.format("miss: no entry of %s matches; the nearest of %s%s differs in %s:", path,
      plural(x.entries, "entry", "entries"), same and " (same ir_hash)" or "",
      plural(#x.differ, "field", "fields")))
    local width = 0
    for _, d in ipairs(x.differ) do width = math.max(width, #d.field) end
    for _, d in ipairs(x.differ) do
      print(string.format("  %-" .. (width + 1) .. "s wanted %s, the entry has %s", d.field .. ":",
        quote(d.want), quote(d.have)))
    end
    local parts = {}
    for _, f in ipairs(cache.fields) do parts[#parts + 1] = f .. "=" .. quote(x.nearest[f]) end
    print("  nearest entry: " .. table.concat(parts, " "))
  end
  return 0
end

function M.main(args)
  local first = args[1] == "cache" and 2 or 1
  local sub = args[first]
  if sub == "help" or sub == "--help" or sub == "-h" then
    print(M.USAGE)
    return 0
  end
  local ok, r = pcall(function()
    if sub == nil then fail("cache: needs a subcommand: stats, list, clear or explain") end
    local handlers = {stats = stats, list = list, clear = clear, explain = explain}
    local h = handlers[sub]
    if not h then fail("cache: unknown subcommand '%s' (stats, list, clear, explain)", sub) end
    local opts, key, nkey, pos = parse(args, first + 1)
    if #pos > 0 then fail("cache %s: unexpected argument '%s'", sub, pos[1]) end
    if nkey > 0 and sub ~= "explain" then fail("cache %s: takes no KEY=VALUE arguments", sub) end
    local c <close> = open(opts)
    return h(c, key, nkey)
  end)
  if ok then return r end
  if type(r) == "table" and r.msg then
    io.stderr:write("dferc: " .. r.msg .. "\n")
    return 1
  end
  error(r, 0)
end

return M

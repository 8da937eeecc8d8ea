--[[
dferc.cli -- the dferc command line.  main(args) returns the exit status;
errors that the user caused are printed as one line naming the input.
]]
local df = require "dferc"
local core = df.core

local cli = {}

local USAGE = [[
usage: dferc COMMAND [options]

commands:
  run-io   --config CASE.config.json --weights W.safetensors --inputs IO.safetensors
           --out OUT.safetensors [--device ref|cpu|cuda] [--model SCRIPT.lua] [--grads]
           build the model a config describes, load its weights, run it on the
           inputs and write its outputs under the fixtures' names (with --grads
           also grad.<parameter> for every parameter; --dump DIR writes each
           compiled kernel's Kernel IR, the LLVM IR and the assembly there)
  demo     [--out DIR] [--quick] [--device D]
           the main job: synthetic data, pre-training, fine-tuning (pre-trained and from
           scratch), evaluation, report.json and pictures in demo-out/
  make-demo-data DIR [--seed S] [--clips N] [--frames F] [--size S] [--quiet]
           render the synthetic dynamic-expression dataset (7 classes): JPEG frame
           folders and train/val/test CSVs; the same arguments give the same bytes
  pretrain --data_path DIR [--batch_size 32] [--epochs 100] [--lr 3e-4] [--mask_ratio 0.9] ...
           self-supervised pre-training as the original's script (see lua/dferc/cmd/pretrain.lua)
  finetune --data_path DIR --nb_classes 7 [--finetune PRETRAINED] [--epochs 100] ...
           fine-tuning with RandAugment, mixup/cutmix, layer decay; then eval on test.csv
  eval     --data_path DIR --nb_classes 7 --finetune CKPT [--test_num_segment 2] [--test_num_crop 2]
           UAR, WAR, weighted F1, per-class recall and the confusion matrix
  reconstruct CHECKPOINT CLIP [CLIP ...] [--out PNG] [--seed S]
           the paper's reconstruction figure for any clips (video files or frame
           folders) from a pre-training checkpoint: original, masked input,
           reconstruction, frame-difference target and prediction
  forward  [--kind finetune|pretrain] [--config C.json] [KEY=VALUE ...] [--device D]
           [--seed S] [--model SCRIPT.lua] [--dump DIR] [--finetune CKPT]
           build a model (full size by default), fill it with its own random
           initialisation, run it on a random clip, print output shapes and time
           (on the fastest device: cpu, or ref without LLVM)
  graph    [SCRIPT.lua] [--config C.json] [KEY=VALUE ...] [--dot OUT.dot]
           build a model script's graph; print its size; write it as Graphviz DOT
  bench    [--device cpu] [--out FILE.json] [--workloads a,b] [--repeats N] [--quick]
           [--gemm auto|blas|generated|bf16]
           time full-size inference, a pre-training step and its compilation, each
           in its own process, against OpenBLAS sgemm measured in the same run
  run      SCRIPT.lua [ARGS ...]   run a Lua script with the dferc module loaded
  cache    stats|list|clear|explain [KEY=VALUE ...] [--cache DB] [--no-cache]
           the kernel cache: statistics, entries, clearing, and why a key
           misses (explain ir_hash=... backend=... toolchain=...)
  convert  IN.pth OUT.safetensors
           write every tensor of a PyTorch checkpoint's state dict (read without
           running any pickle code) as safetensors, and say what else it held
  devices  list the devices of this build
  version  print the version

Commands that compile take --no-cache (compile every kernel; the kernel
cache is $DFERC_CACHE, else $XDG_CACHE_HOME/dferc/kernels.db) and --tune
(or DFERC_TUNE=1: search the configurations of every kernel that has no
tuned winner in the kernel cache, check each against the Kernel IR
interpreter, time it and store the fastest; without it a stored winner is
used, else the default configuration).
The default model script is models/mae_dfer.lua.  KEY=VALUE sets one config
key (values parsed as JSON: img=64 region=[2,2,4] first="cross").]]

-- -------------------------------------------------------------- helpers

local function fail(fmt, ...)
  error({msg = string.format(fmt, ...)}, 0)
end

-- Parse "--flag value" options; `flags` maps name -> "value" | "bool".
-- Positional arguments and KEY=VALUE pairs are returned separately.
local function parse_args(args, flags, first)
  local opts, pos, sets = {}, {}, {}
  local i = first or 1
  while i <= #args do
    local a = args[i]
    local name = a:match("^%-%-([%w%-_]+)$")
    if name then
      local kind = flags[name]
      if not kind then fail("unknown option --%s (see dferc help)", name) end
      if kind == "bool" then
        opts[name] = true
      else
        if args[i + 1] == nil then fail("option --%s needs a value", name) end
        opts[name] = args[i + 1]
        i = i + 1
      end
    elseif a:match("^[%a_][%w_]*=") then
      local k, v = a:match("^([%a_][%w_]*)=(.*)$")
      local val, err = core.json_decode(v)
      if val == nil and err then val = v end -- a bare word is a string
      sets[#sets + 1] = {k, val}
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos, sets
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then fail("%s", err) end
  local s = f:read("a")
  f:close()
  return s
end

local function read_json(path)
  local v, err = core.json_decode(read_file(path))
  if v == nil then fail("%s: %s", path, err) end
  return v
end

-- Load a model script through the model-script contract.
local function load_script(path)
  local script
  if path then
    local chunk, err = loadfile(path)
    if not chunk then fail("%s", err) end
    local ok, r = pcall(chunk)
    if not ok then fail("%s", tostring(r)) end
    script = r
  else
    script = require "mae_dfer"
    path = "models/mae_dfer.lua"
  end
  if type(script) ~= "table" or type(script.build) ~= "function" then
    fail("%s: a model script must return a table with build(config)", path)
  end
  if script.check_config == nil then
    -- optional: a script without one takes its config as given
    script.check_config = function(cfg) return cfg end
  end
  return script, path
end

-- Run build() and turn its errors into one-line failures.
local function build(script, cfg, opts, device)
  if device then opts.fused_attention = core.supports(device, "attention") end
  local ok, model = pcall(script.build, cfg, opts)
  if not ok then fail("%s", type(model) == "table" and model.msg or tostring(model)) end
  return model
end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

-- --no-cache: compile every kernel, read and store nothing.
local function set_cache(opts)
  if opts["no-cache"] then core.set_kernel_cache(false) end
end

-- --dump DIR: compiled kernels (Kernel IR, LLVM IR, assembly) go there.
local function set_dump(dir)
  if not dir then return end
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  core.set_dump_dir(dir)
end

local function sorted(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- -------------------------------------------------------------- run-io

--[[
Feed every parameter from the weights file, checking names and shapes
both ways: a missing or unexpected parameter, or one of the wrong shape or
dtype, is an error naming the file and the tensor.
]]
local function bind_weights(model, weights, path, feeds)
  local problems = {}
  local want = {}
  for _, p in ipairs(model.params) do
    want[p.name] = true
    local t = weights.tensors[p.name]
    if not t then
      problems[#problems + 1] = string.format("missing parameter '%s' %s", p.name, shape_str(p.shape))
    elseif t.dtype ~= "f32" and t.dtype ~= "f64" and t.dtype ~= "bf16" and t.dtype ~= "f16" then
      problems[#problems + 1] = string.format("parameter '%s' has dtype %s, expected a float", p.name, t.dtype)
    elseif shape_str(t.shape) ~= shape_str(p.shape) then
      problems[#problems + 1] = string.format("parameter '%s' has shape %s, expected %s",
        p.name, shape_str(t.shape), shape_str(p.shape))
    else
      feeds[p.name] = t.dtype == "f32" and t or t:cast("f32")
    end
  end
  for _, name in ipairs(weights.names) do
    if not want[name] then
      -- a shared module's parameters appear under each of its names
      local target = model.resolve_alias and model.resolve_alias(name)
      local t, tt = weights.tensors[name], target and weights.tensors[target.name]
      if not target then
        problems[#problems + 1] = string.format("unexpected tensor '%s' %s", name, shape_str(t.shape))
      elseif not tt then
        problems[#problems + 1] = string.format("'%s' is a duplicate of '%s', which is missing", name, target.name)
      else
        local rel, maxd = df.compare(t, tt)
        if shape_str(t.shape) ~= shape_str(tt.shape) or maxd ~= 0 then
          problems[#problems + 1] = string.format("'%s' should equal '%s' (one shared module) but differs",
            name, target.name)
        end
      end
    end
  end
  if #problems > 0 then
    local shown = {}
    for i = 1, math.min(#problems, 8) do shown[i] = problems[i] end
    if #problems > 8 then shown[#shown + 1] = string.format("... and %d more", #problems - 8) end
    fail("%s: does not fit the model: %s", path, table.concat(shown, "; "))
  end
end

-- Count the visible (false) tokens of each mask row; all rows must agree.
local function visible_count(mask, path)
  local s = mask.shape
  if mask.dtype ~= "bool" or #s ~= 2 then
    fail("%s: tensor 'mask' must be [B, N] bool, got %s %s", path, shape_str(s), mask.dtype)
  end
  local vals = mask:totable()
  local count
  for b = 0, s[1] - 1 do
    local c = 0
    for i = 1, s[2] do
      if vals[b * s[2] + i] == 0 then c = c + 1 end
    end
    if count and c ~= count then
      fail("%s: mask rows keep different numbers of visible tokens (%d and %d); "
        .. "every sample of a batch must keep the same number", path, count, c)
    end
    count = c
  end
  return count
end

function cli.run_io(args)
  local opts = parse_args(args, {config = "value", weights = "value", inputs = "value",
    out = "value", device = "value", model = "value", grads = "bool", dump = "value", ["no-cache"] = "bool"}, 2)
  set_dump(opts.dump)
  set_cache(opts)
  for _, k in ipairs {"config", "weights", "inputs", "out"} do
    if not opts[k] then fail("run-io: --%s is required (see dferc help)", k) end
  end
  local script = load_script(opts.model)
  local raw = read_json(opts.config)
  local ok, cfg = pcall(script.check_config, raw, opts.config)
  if not ok then fail("%s", tostring(cfg)) end

  local io_file, err = df.load(opts.inputs)
  if not io_file then fail("%s", err) end
  local videos = io_file.tensors.videos
  if not videos then fail("%s: no tensor 'videos'", opts.inputs) end
  local vs = videos.shape
  if #vs ~= 5 then fail("%s: 'videos' must be [B, 3, T, H, W], got %s", opts.inputs, shape_str(vs)) end
  if raw.B == nil then cfg.B = vs[1] end
  local expect = {cfg.B, 3, cfg.frames, cfg.img, cfg.img}
  if shape_str(vs) ~= shape_str(expect) then
    fail("%s: 'videos' is %s but %s describes %s", opts.inputs, shape_str(vs), opts.config, shape_str(expect))
  end
  local build_opts = {}
  if cfg.kind == "pretrain" then
    local mask = io_file.tensors.mask
    if not mask then fail("%s: no tensor 'mask' (a pretrain case needs one)", opts.inputs) end
    local n_tokens = (cfg.frames // 2) * (cfg.img // 16) * (cfg.img // 16)
    if shape_str(mask.shape) ~= shape_str({cfg.B, n_tokens}) then
      fail("%s: 'mask' is %s, expected [%d, %d]", opts.inputs, shape_str(mask.shape), cfg.B, n_tokens)
    end
    build_opts.num_visible = visible_count(mask, opts.inputs)
  end
  local model = build(script, cfg, build_opts, opts.device or "ref")

  local weights, werr = require("dferc.weights").load(opts.weights)
  if not weights then fail("%s", werr) end
  local feeds = {}
  bind_weights(model, weights, opts.weights, feeds)
  feeds.videos = videos.dtype == "f32" and videos or videos:cast("f32")
  local outputs = {}
  for k, v in pairs(model.outputs) do outputs[k] = v end
  if cfg.kind == "pretrain" then
    feeds.mask = io_file.tensors.mask
  else
    local labels = io_file.tensors.labels
    if labels then
      if shape_str(labels.shape) ~= shape_str({cfg.B}) then
        fail("%s: 'labels' is %s, expected [%d]", opts.inputs, shape_str(labels.shape), cfg.B)
      end
      for i = 1, cfg.B do
        local l = labels:get(i)
        if l < 0 or l >= cfg.classes then
          fail("%s: label %d of sample %d is outside 0..%d", opts.inputs, l, i - 1, cfg.classes - 1)
        end
      end
      feeds.labels = labels:cast("i64")
    else
      outputs.loss = nil
      io.stderr:write(string.format("dferc: %s has no 'labels': not computing the loss\n", opts.inputs))
    end
  end

  if opts.grads then
    if not outputs.loss then fail("run-io: --grads needs the loss (and so 'labels' in %s)", opts.inputs) end
    -- grad.<name> for every parameter; a shared module's gradient is the
    -- sum over its uses, under the name it was created with
    local ps = {}
    for i, p in ipairs(model.params) do ps[i] = p.tensor end
    local ok, gs = pcall(df.grad, outputs.loss, ps)
    if not ok then fail("%s", tostring(gs)) end
    for i, p in ipairs(model.params) do outputs["grad." .. p.name] = gs[i] end
  end
  local t0 = core.clock()
  local compiled, cerr = df.compile {outputs = outputs, device = opts.device or "ref"}
  if not compiled then fail("%s", cerr) end
  local t1 = core.clock()
  local res, rerr = compiled:run(feeds)
  if not res then fail("%s", rerr) end
  local t2 = core.clock()

  local entries = {}
  for _, k in ipairs(sorted(res)) do entries[#entries + 1] = {k, res[k]} end
  local okw, werr2 = df.save(opts.out, entries, {format = "pt", producer = "dferc " .. df.version})
  if not okw then fail("%s", werr2) end
  local parts, ngrads = {}, 0
  for _, e in ipairs(entries) do
    if e[1]:sub(1, 5) == "grad." then ngrads = ngrads + 1
    else parts[#parts + 1] = e[1] .. " " .. shape_str(e[2].shape) end
  end
  if ngrads > 0 then parts[#parts + 1] = string.format("%d gradients grad.*", ngrads) end
  print(string.format("%s: %s %s model, %d parameters, device %s: compile %.3f s, run %.3f s",
    opts.out, cfg.kind, cfg.attn, model.n_params, compiled.device, t1 - t0, t2 - t1))
  print("  wrote " .. table.concat(parts, ", "))
  return 0
end

-- -------------------------------------------------------------- config from the command line

local function config_from(opts, sets, script)
  local cfg = {}
  if opts.config then cfg = read_json(opts.config) end
  if opts.kind then cfg.kind = opts.kind end
  for _, kv in ipairs(sets) do cfg[kv[1]] = kv[2] end
  local ok, checked = pcall(script.check_config, cfg, opts.config or "config")
  if not ok then fail("%s", tostring(checked)) end
  return checked
end

-- -------------------------------------------------------------- graph

function cli.graph(args)
  local opts, pos, sets = parse_args(args, {config = "value", dot = "value", kind = "value"}, 2)
  local script, path = load_script(pos[1])
  local cfg = config_from(opts, sets, script)
  local model = build(script, cfg, {})
  local outs, names = {}, {}
  for _, k in ipairs(sorted(model.outputs)) do
    outs[#outs + 1] = model.outputs[k]
    names[#names + 1] = k
  end
  print(string.format("%s: %s model (%s), %d graph nodes, %d parameter tensors, %d parameters",
    path, cfg.kind, cfg.attn, model.graph:count(), #model.params, model.n_params))
  for i, k in ipairs(names) do
    print(string.format("  output %-12s %s %s", k, shape_str(outs[i].shape), outs[i].dtype))
  end
  if opts.dot then
    local ok, err = model.graph:dot(opts.dot, outs, names)
    if not ok then fail("%s", err) end
    print("  wrote " .. opts.dot)
  end
  return 0
end

-- -------------------------------------------------------------- forward

-- Fill a parameter with its recorded initialisation (core.init).
local function init_param(p, seed)
  local t = df.host("f32", p.shape)
  local init = p.init
  local fan_in, fan_out = 1, p.shape[1] or 1
  for i = 2, #p.shape do fan_in = fan_in * p.shape[i] end
  if init.kind == "xavier_uniform" then
    local rf = 1
    for i = 3, #p.shape do rf = rf * p.shape[i] end
    local a = math.sqrt(6 / ((p.shape[2] or 1) * rf + (p.shape[1] or 1) * rf))
    core.init(t, "uniform", -a, a, seed)
  elseif init.kind == "trunc_normal" then
    core.init(t, "trunc_normal", init.std, init.bound or 2 * init.std, seed)
  elseif init.kind == "uniform" then
    core.init(t, "uniform", -init.bound, init.bound, seed)
  elseif init.kind == "ones" then
    core.init(t, "fill", 1, 0, seed)
  else
    core.init(t, "fill", 0, 0, seed)
  end
  if init.scale then core.init(t, "scale", init.scale, 0, seed) end
  return t
end
cli.init_param = init_param

-- A random normalised clip [B, 3, T, S, S] and, for pre-training, a
-- part-window (or tube) mask drawn like the original's generators.
function cli.random_mask(cfg, g, seed)
  local vals = {}
  local rng = seed
  local function rand_below(n)
    rng = (rng * 6364136223846793005 + 1442695040888963407)
    return ((rng >> 33) % n)
  end
  for b = 1, cfg.B do
    local frame = {}
    for i = 1, g.h * g.w do frame[i] = false end
    local wh, ww = g.h, g.w
    if cfg.mask == "part_window" then wh, ww = cfg.win[1], cfg.win[2] end
    for wy = 0, g.h // wh - 1 do
      for wx = 0, g.w // ww - 1 do
        local cells = {}
        for y = 0, wh - 1 do
          for x = 0, ww - 1 do cells[#cells + 1] = (wy * wh + y) * g.w + wx * ww + x + 1 end
        end
        local nmask = math.floor(cfg.mask_ratio * #cells)
        for i = #cells, 2, -1 do -- Fisher-Yates
          local j = rand_below(i) + 1
          cells[i], cells[j] = cells[j], cells[i]
        end
        for i = 1, nmask do frame[cells[i]] = true end
      end
    end
    for _ = 1, g.t do
      for i = 1, g.h * g.w do vals[#vals + 1] = frame[i] end
    end
  end
  return df.host("bool", {cfg.B, g.N}, vals)
end

function cli.forward(args)
  local opts, _, sets = parse_args(args, {config = "value", kind = "value", device = "value",
    seed = "value", model = "value", dump = "value", finetune = "value", ["no-cache"] = "bool"}, 2)
  set_dump(opts.dump)
  set_cache(opts)
  local script = load_script(opts.model)
  local cfg = config_from(opts, sets, script)
  local seed = tonumber(opts.seed or "0") or fail("--seed must be a number")
  local t0 = core.clock()
  local model = build(script, cfg, {}, opts.device or cli.fastest_device())
  local t1 = core.clock()
  local feeds = {}
  for i, p in ipairs(model.params) do feeds[p.name] = init_param(p, seed * 100003 + i) end
  if opts.finetune then
    if cfg.kind ~= "finetune" then fail("--finetune loads a checkpoint into a fine-tuning model") end
    local W = require "dferc.weights"
    local loaded, lerr = W.load(opts.finetune)
    if not loaded then fail("%s", lerr) end
    local values, report = W.for_finetune(model, loaded, feeds)
    for k, v in pairs(values) do feeds[k] = v end
    print(W.describe(report, opts.finetune))
  end
  feeds.videos = df.randn("f32", model.inputs.videos.shape, seed + 7)
  if model.inputs.mask then
    local g = model.geometry
    feeds.mask = cli.random_mask(cfg, g, seed + 11)
  end
  if model.inputs.labels then
    local l = {}
    for i = 1, cfg.B do l[i] = (i - 1) % cfg.classes end
    feeds.labels = df.host("i64", {cfg.B}, l)
  end
  local t2 = core.clock()
  local compiled, cerr = df.compile {outputs = model.outputs, device = opts.device or cli.fastest_device()}
  if not compiled then fail("%s", cerr) end
  local t3 = core.clock()
  local res, rerr = compiled:run(feeds)
  if not res then fail("%s", rerr) end
  local t4 = core.clock()
  local g = model.geometry
  print(string.format("MAE-DFER %s model (%s attention): %d frames of %dx%d, width %d, depth %d%s",
    cfg.kind, cfg.attn, cfg.frames, cfg.img, cfg.img, cfg.dim or cfg.enc_dim, cfg.depth or cfg.enc_depth,
    g.R and string.format(", regions %s (%d regions of %d tokens)", shape_str(cfg.region), g.R, g.L) or ""))
  print(string.format("  %d parameters in %d tensors; %d graph nodes", model.n_params, #model.params,
    model.graph:count()))
  for _, k in ipairs(sorted(res)) do
    local t = res[k]
    local extra = ""
    if t.numel == 1 then extra = string.format(" = %.6g", t:get(1)) end
    print(string.format("  %-12s %s %s%s", k, shape_str(t.shape), t.dtype, extra))
  end
  local st = compiled:stats()
  print(string.format("  device %s: build %.2f s, init %.2f s, compile %.2f s, run %.2f s (peak %.0f MiB of intermediates)",
    compiled.device, t1 - t0, t2 - t1, t3 - t2, t4 - t3, st.peak_bytes / 1048576))
  if st.kernels > 0 then
    print(string.format("  %d kernels: %d from the kernel cache, %d compiled (%.2f s)", st.kernels, st.cache_hits,
      st.cache_misses, st.codegen_seconds))
  end
  return 0
end

-- The fastest device this machine can use: cpu when this build has LLVM.
-- The device a command uses when --device is not given: a usable GPU
-- (cuda), else the JIT cpu device, else ref.
function cli.fastest_device()
  if cli.default_device then return cli.default_device end
  for _, d in ipairs {"cuda", "cpu"} do
    if core.compile(df.graph(), {}, d) then
      cli.default_device = d
      return d
    end
  end
  cli.default_device = "ref"
  return "ref"
end

-- -------------------------------------------------------------- run

function cli.run(args)
  local path = args[2]
  if not path then fail("run: needs a script (dferc run SCRIPT.lua [ARGS ...])") end
  local chunk, err = loadfile(path)
  if not chunk then fail("%s", err) end
  local script_args = {}
  for i = 3, #args do script_args[#script_args + 1] = args[i] end
  _G.arg = script_args
  _G.arg[0] = path
  local r = chunk(table.unpack(script_args))
  return math.type(r) == "integer" and r or 0
end

-- -------------------------------------------------------------- convert

-- Describe a value of a checkpoint's extra entries in one short line.
local function brief(v)
  if type(v) ~= "table" then return tostring(v) end
  local n, parts = 0, {}
  for k, x in pairs(v) do
    n = n + 1
    if #parts < 8 and type(x) ~= "table" and type(x) ~= "userdata" then
      parts[#parts + 1] = tostring(k) .. "=" .. tostring(x)
    end
  end
  table.sort(parts)
  return string.format("{%s%s}", table.concat(parts, ", "), n > #parts and (#parts > 0 and ", ..." or "...") or "")
end

function cli.convert(args)
  local opts, pos = parse_args(args, {}, 2)
  local src, dst = pos[1], pos[2]
  if not src or not dst then fail("convert: usage: dferc convert IN.pth OUT.safetensors") end
  local r, err = require("dferc.weights").load(src)
  if not r then fail("%s", err) end
  local entries = {}
  for _, name in ipairs(r.names) do entries[#entries + 1] = {name, r.tensors[name]} end
  local ok, werr = df.save(dst, entries, {format = "pt", source = src:match("[^/]*$")})
  if not ok then fail("%s", werr) end
  print(string.format("%s: %d tensors from %s%s", dst, #entries, r.format,
    r.which ~= "" and r.which and (" '" .. r.which .. "'") or ""))
  local keys = {}
  for k in pairs(r.extra or {}) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = r.extra[k]
    if k == "epoch" or k == "args" or type(v) ~= "table" then
      print(string.format("  found %s = %s", k, brief(v)))
    else
      print(string.format("  skipped %s (%s)", k, k == "optimizer" and "optimiser state" or k == "scaler" and "loss scaler" or "not weights"))
    end
  end
  return 0
end

function cli.bench(args)
  local opts = parse_args(args, {device = "value", out = "value", workloads = "value", repeats = "value",
    quick = "bool", one = "value", ["no-cache"] = "bool", gemm = "value"}, 2)
  if opts.gemm then
    -- the cpu device's products: blas, generated or bf16 (checked here)
    local ok, err = false, string.format("'%s' is not one of auto, blas, generated, bf16", opts.gemm)
    if ({auto = 1, blas = 1, generated = 1, bf16 = 1})[opts.gemm] then ok, err = pcall(core.set_gemm, opts.gemm) end
    if not ok then
      io.stderr:write("dferc: bench --gemm: " .. tostring(err):gsub("^set_gemm: ", "") .. "\n")
      return 2
    end
  end
  -- the measurements run with OpenBLAS choosing its own kernels: a pinned
  -- core type (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) is unset for them, and
  -- the core it picked is in every record (blas_core)
  if not opts.one and (os.getenv("OPENBLAS_CORETYPE") or os.getenv("OPENBLAS_L2_SIZE")) then
    local q = {"env", "-u", "OPENBLAS_CORETYPE", "-u", "OPENBLAS_L2_SIZE", core.exe()}
    for i = 1, #args do q[#q + 1] = args[i] end
    for i, w in ipairs(q) do q[i] = "'" .. tostring(w):gsub("'", "'\\''") .. "'" end
    print("bench: measuring with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset")
    io.stdout:flush()
    local ok, _, code = os.execute(table.concat(q, " "))
    return ok and 0 or (code or 1)
  end
  set_cache(opts)
  return require("dferc.bench").main(opts)
end

-- The commands that compile kernels, and so take --tune.
local TUNES = {bench = true, forward = true, ["run-io"] = true, pretrain = true, finetune = true, eval = true,
  demo = true, reconstruct = true}

function cli.main(args)
  local cmd = args[1]
  local handlers = {
    bench = cli.bench,
    convert = cli.convert,
    cache = function(a) return require("dferc.cache_cli").main(a) end,
    pretrain = function(a) return require("dferc.cmd.pretrain").main(a) end,
    finetune = function(a) return require("dferc.cmd.finetune").main(a) end,
    eval = function(a) return require("dferc.cmd.eval").main(a) end,
    reconstruct = function(a) return require("dferc.cmd.reconstruct").main(a) end,
    demo = function(a) return require("dferc.cmd.demo").main(a) end,
    ["make-demo-data"] = function(a) return require("dferc.make_demo_data").main(a) end,
    ["run-io"] = cli.run_io, graph = cli.graph, forward = cli.forward, run = cli.run,
    devices = function()
      for _, d in ipairs(core.devices()) do
        local ok, why = core.compile(df.graph(), {}, d)
        -- one line: the device, or why it cannot run here (without the
        -- device's own "name: " prefix repeated)
        print(ok and d or (d .. ": unavailable: " .. tostring(why):gsub("^" .. d .. ": ", "")))
      end
      return 0
    end,
    version = function() print("dferc " .. df.version) return 0 end,
  }
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    print(USAGE)
    return cmd == nil and 2 or 0
  end
  local h = handlers[cmd]
  if TUNES[cmd] then
    -- --tune, anywhere after the command: tuning is process-wide (and
    -- inherited by the processes a command starts, such as bench's)
    local rest = {}
    for _, a in ipairs(args) do
      if a == "--tune" then require("dferc.cache").set_tune(true) else rest[#rest + 1] = a end
    end
    args = rest
  end
  if not h then
    io.stderr:write("dferc: unknown command '" .. cmd .. "'\n" .. USAGE .. "\n")
    return 2
  end
  local ok, r = pcall(h, args)
  if ok then return r end
  if type(r) == "table" and r.msg then
    io.stderr:write("dferc: " .. r.msg .. "\n")
    return 1
  end
  error(r, 0)
end

return cli

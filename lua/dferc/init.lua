--[[
dferc -- the graph-building front end.

Tensors are symbolic nodes of a graph (dferc.Tensor): every function here
adds a node, infers its shape and dtype at once, and records the file:line
of the user's script that called it; a mismatch raises an error such as
    model.lua:42: matmul: [8, 101, 512] x [384, 512]: inner sizes differ
Indexing follows PyTorch, since models are ported from it: axes and slice
starts are 0-based, slice ends exclusive, negative values count from the
end.  Operators: a + b, a - b, a * b, a / b, -a, a ^ b; a number operand
becomes a constant of the tensor's dtype.
]]
local core = require "dferc.core"

local M = {core = core, null = core.null, version = core.version}

local op = core.op

-- -------------------------------------------------------------- sources

M.graph = core.graph

function M.input(g, name, dtype, shape)
  return op("input", {}, {str = name, dtype = dtype, shape = shape}, g)
end

function M.param(g, name, shape, dtype)
  return op("param", {}, {str = name, dtype = dtype or "f32", shape = shape}, g)
end

function M.fill(g, value, shape, dtype)
  return op("fill", {}, {fa = {value}, dtype = dtype or "f32", shape = shape or {}}, g)
end

function M.iota(g, shape, axis, dtype)
  return op("iota", {}, {ia = {axis or 0}, dtype = dtype or "i64", shape = shape}, g)
end

-- The fixed sinusoidal position table [n, c] (float32 values).
function M.sinusoid(g, n, c, dtype)
  return op("sinusoid", {}, {dtype = dtype or "f32", shape = {n, c}}, g)
end

-- random(seed, shape, salt [, dtype]): uniform [0, 1) from the counter-based
-- generator; seed is an integer scalar tensor (fed per step, below 2^53),
-- salt an integer that tells this call site's stream from the others.
function M.random(seed, shape, salt, dtype)
  return op("rand", {seed}, {ia = {salt}, dtype = dtype or "f32", shape = shape})
end

-- A number becomes a scalar constant of `like`'s dtype.
local function lift(x, like)
  if type(x) == "number" then return M.fill(like.graph, x, {}, like.dtype) end
  return x
end

-- -------------------------------------------------------------- elementwise

for _, name in ipairs {"neg", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "gelu", "abs", "recip"} do
  M[name] = function(x) return op(name, {x}) end
end

for _, name in ipairs {"add", "sub", "mul", "div", "max", "min", "pow",
                       "eq", "ne", "lt", "le", "gt", "ge"} do
  M[name] = function(a, b)
    if type(a) == "number" then a = lift(a, b) else b = lift(b, a) end
    return op(name, {a, b})
  end
end

function M.where(c, a, b)
  if type(a) == "number" then a = lift(a, b) else b = lift(b, a) end
  return op("where", {c, a, b})
end

function M.cast(x, dtype) return op("cast", {x}, {dtype = dtype}) end

-- M.gelu (above): the exact erf form, 0.5 x (1 + erf(x / sqrt 2)), one op.

-- -------------------------------------------------------------- products

-- matmul(a, b [, {ta = bool, tb = bool}]): [..., M, K] x [..., K, N].
function M.matmul(a, b, t)
  t = t or {}
  return op("matmul", {a, b}, {ia = {t.ta and 1 or 0, t.tb and 1 or 0}})
end

-- linear(x, weight [, bias]): x [..., K] with a PyTorch weight [N, K].
function M.linear(x, w, b)
  local y = op("matmul", {x, w}, {ia = {0, 1}})
  if b then y = y + b end
  return y
end

-- -------------------------------------------------------------- reductions

local function axes_mask(x, axes)
  if axes == nil then
    axes = {}
    for i = 0, x.ndim - 1 do axes[#axes + 1] = i end
  elseif type(axes) == "number" then
    axes = {axes}
  end
  local mask, nd = 0, x.ndim
  for _, a in ipairs(axes) do
    local ax = a < 0 and a + nd or a
    if ax < 0 or ax >= nd then
      error(string.format("axis %d out of range for rank %d", a, nd), 3)
    end
    mask = mask | (1 << ax)
  end
  return mask
end

-- sum/mean/amax(x [, axes [, keepdim]]): axes a number or a list; all when nil.
for _, name in ipairs {"sum", "mean", "amax"} do
  M[name] = function(x, axes, keepdim)
    return op(name, {x}, {ia = {axes_mask(x, axes), keepdim and 1 or 0, 0}})
  end
end

-- var(x, axes, keepdim, correction): correction 1 = unbiased (the default).
function M.var(x, axes, keepdim, correction)
  return op("var", {x}, {ia = {axes_mask(x, axes), keepdim and 1 or 0, correction or 1}})
end

function M.softmax(x, axis) return op("softmax", {x}, {ia = {axis or -1}}) end
function M.log_softmax(x, axis) return op("log_softmax", {x}, {ia = {axis or -1}}) end

function M.layernorm(x, w, b, eps) return op("layernorm", {x, w, b}, {fa = {eps or 1e-6}}) end
-- Fused attention: softmax(scale q k^T) v for q [..., N, d], k, v [..., M, d]
-- (one op: the N x M scores are never stored; see ops/attention.c).
function M.attention(q, k, v, scale) return op("attention", {q, k, v}, {fa = {scale or 1.0}}) end
-- MAE-DFER's reconstruction loss as one op (ops/recon.c): pred [B, M, P]
-- against the targets of the masked tokens idx [B, M] of the un-normalised
-- video pix [B, C, T, H, W] (per-tubelet, per-channel normalisation, frame
-- difference); the mean squared error, [1].  No gradient for pix or idx.
function M.recon_loss(pred, pix, idx, tubelet, patch, eps)
  return op("recon_loss", {pred, pix, idx}, {ia = {tubelet or 2, patch or 16}, fa = {eps or 1e-6}})
end

-- -------------------------------------------------------------- layout

-- reshape(x, shape): one entry may be -1 (inferred).
function M.reshape(x, shape)
  local known, hole = 1, nil
  local s = {}
  for i, d in ipairs(shape) do
    s[i] = d
    if d == -1 then
      if hole then error("reshape: more than one -1 in the shape", 2) end
      hole = i
    else
      known = known * d
    end
  end
  if hole then
    local n = 1
    for _, d in ipairs(x.shape) do n = n * d end
    s[hole] = known > 0 and n // known or 0
  end
  return op("reshape", {x}, {shape = s})
end

function M.expand(x, shape) return op("expand", {x}, {shape = shape}) end

-- permute(x, perm): perm lists 0-based input axes.
function M.permute(x, perm) return op("permute", {x}, {ia = perm}) end

-- slice(x, axis, start [, stop [, step]]): Python's x[..., start:stop:step].
function M.slice(x, axis, start, stop, step)
  local nd = x.ndim
  local ax = axis < 0 and axis + nd or axis
  local size = x.shape[ax + 1]
  if size == nil then
    error(string.format("slice: axis %d out of range for rank %d", axis, nd), 2)
  end
  local function norm(v, default)
    if v == nil then return default end
    if v < 0 then v = v + size end
    return math.max(0, math.min(v, size))
  end
  local s, e = norm(start, 0), norm(stop, size)
  if e < s then e = s end
  return op("slice", {x}, {ia = {ax, s, e, step or 1}})
end

-- concat({a, b, ...}, axis)
function M.concat(list, axis) return op("concat", list, {ia = {axis or 0}}) end

-- pad(x, axis, before, after): zeros around x along one axis.
function M.pad(x, axis, before, after) return op("pad", {x}, {ia = {axis, before, after}}) end

-- -------------------------------------------------------------- indexing

-- gather(x, idx, axis): out[q, m, s] = x[q, idx[q, m], s].
function M.gather(x, idx, axis) return op("gather", {x, idx}, {ia = {axis}}) end

-- scatter_add(idx, src, axis, shape): zeros of `shape`, then
-- out[q, idx[q, m], s] += src[q, m, s] (the gradient of gather).
function M.scatter_add(idx, src, axis, shape)
  return op("scatter_add", {idx, src}, {ia = {axis}, shape = shape})
end

-- mask_index(mask, value, count [, check]): [B, count] positions where the
-- [B, N] bool mask equals value, ascending.  check = {t, h, w, rh, rw}
-- adds the LGI check that every rh x rw window of every frame holds the
-- same number of them.
function M.mask_index(mask, value, count, check)
  local ia = {value and 1 or 0, count, 0, 0, 0, 0, 0}
  if check then
    for i = 1, 5 do ia[2 + i] = check[i] end
  end
  return op("mask_index", {mask}, {ia = ia})
end

-- -------------------------------------------------------------- operators

local mt = core.tensor_metatable()
mt.__add = M.add
mt.__sub = M.sub
mt.__mul = M.mul
mt.__div = M.div
mt.__pow = M.pow
mt.__unm = M.neg

core.set_methods(M)

-- -------------------------------------------------------------- gradients

-- grad(loss, {p1, p2, ...}) -> {g1, g2, ...}: nodes computing
-- d sum(loss) / d p_i, added to the same graph (reverse mode).
M.grad = core.grad

-- -------------------------------------------------------------- running

-- compile{outputs = {name = tensor, ...} | {tensor, ...}, device = "ref"}
-- -> compiled object with :run(feeds) returning outputs under the same
-- keys; or nil, message.
-- compile{loss = tensor, params = model, optimizer = opt, device = ...}
-- -> a training step (see dferc.train): step(batch) returns the loss.
function M.compile(args)
  if args.loss then
    return require("dferc.train").compile {model = args.params, loss = args.loss,
      optimizer = args.optimizer, device = args.device, outputs = args.outputs, seed = args.seed}
  end
  local keys, list, g = {}, {}, nil
  for k, t in pairs(args.outputs) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for i, k in ipairs(keys) do
    list[i] = args.outputs[k]
    g = g or list[i].graph
  end
  if not g then error("compile: no outputs", 2) end
  local plan, err = core.compile(g, list, args.device or "ref")
  if not plan then return nil, err end
  local compiled = {plan = plan, keys = keys, device = args.device or "ref"}
  function compiled:run(feeds)
    local outs, e = self.plan:run(feeds)
    if not outs then return nil, e end
    local r = {}
    for i, k in ipairs(self.keys) do r[k] = outs[i] end
    return r
  end
  function compiled:stats() return self.plan:stats() end
  -- compiled:keep{Host, ...}: feeds whose values stay in device memory
  -- between runs (weights); after writing one on the host, call
  -- compiled:sync(true) before the next run.  Nothing on cpu and ref.
  function compiled:keep(list) return self.plan:keep(list) end
  function compiled:sync(host_writes) return self.plan:sync(host_writes) end
  return compiled
end

M.load = core.load
M.save = core.save
M.host = core.host
M.randn = core.randn
M.rand = core.rand
M.compare = core.compare
M.stack = core.stack
M.json_decode = core.json_decode
M.clock = core.clock

return M

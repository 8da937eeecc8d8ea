--[[
dferc.weights -- weights files: safetensors or the authors' PyTorch
checkpoints (.pth, read by a restricted unpickler that never runs code),
and the pre-training -> fine-tuning key mapping of the original's
fine-tuning script.
]]
local df = require "dferc"
local core = df.core

local W = {}

-- Is the file a zip archive (torch.save's format)?
local function is_zip(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local magic = f:read(4)
  f:close()
  return magic == "PK\3\4"
end

--[[
W.load(path) -> {names = {...}, tensors = {name = Host}, format =
"safetensors" | "pth", which = "model" | "module" | "", extra = {...}}
| nil, message.  A .pth holds its state dict under 'model' or 'module'
(or is one); `extra` has its other entries (epoch, args, optimizer, ...).
]]
function W.load(path)
  if is_zip(path) then
    local r, err = core.load_pth(path)
    if not r then return nil, err end
    r.format = "pth"
    return r
  end
  local r, err = df.load(path)
  if not r then return nil, err end
  r.format = "safetensors"
  r.extra = {}
  return r
end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

--[[
W.for_finetune(model, loaded, fresh) -> values, report
As the original's fine-tuning script loads a checkpoint: keys lose a
leading "encoder." or "backbone."; the decoder, encoder_to_decoder,
mask_token and norm.* (the fine-tuning model pools with fc_norm) are
dropped; head.* is dropped when its shape differs; fc_norm and head keep
their fresh initialisation (`fresh`: name -> Host, the model's own
initial values).  values: name -> Host for every parameter; report:
{loaded = {...}, dropped = {{name, why}}, missing = {...}}.
]]
function W.for_finetune(model, loaded, fresh)
  local want = {}
  for _, p in ipairs(model.params) do want[p.name] = p end
  local values, report = {}, {loaded = {}, dropped = {}, missing = {}}
  for _, name in ipairs(loaded.names) do
    local t = loaded.tensors[name]
    local key = name:gsub("^backbone%.", ""):gsub("^encoder%.", "")
    local p = want[key]
    local why
    if key:match("^decoder%.") or key:match("^encoder_to_decoder%.") or key == "mask_token"
        or key:match("^norm%.") then
      why = "not part of the fine-tuning model"
    elseif key:match("^fc_norm%.") then
      why = "fc_norm keeps its fresh initialisation"
    elseif not p then
      local alias = model.resolve_alias and model.resolve_alias(key)
      why = alias and ("a second name of the shared " .. alias.name) or "no such parameter"
    elseif shape_str(t.shape) ~= shape_str(p.shape) then
      why = string.format("shape %s, the model has %s", shape_str(t.shape), shape_str(p.shape))
    end
    if why then
      report.dropped[#report.dropped + 1] = {name, why}
    elseif not values[key] then
      values[key] = t.dtype == p.tensor.dtype and t or t:cast(p.tensor.dtype)
      report.loaded[#report.loaded + 1] = key
    end
  end
  for _, p in ipairs(model.params) do
    if not values[p.name] then
      report.missing[#report.missing + 1] = p.name
      values[p.name] = fresh[p.name]
    end
  end
  return values, report
end

-- One readable summary of a for_finetune report.
function W.describe(report, path)
  local lines = {string.format("%s: %d parameters loaded", path, #report.loaded)}
  if #report.dropped > 0 then
    lines[#lines + 1] = string.format("  dropped %d:", #report.dropped)
    for _, d in ipairs(report.dropped) do lines[#lines + 1] = "    " .. d[1] .. " (" .. d[2] .. ")" end
  end
  if #report.missing > 0 then
    lines[#lines + 1] = string.format("  missing %d (fresh initialisation):", #report.missing)
    for _, m in ipairs(report.missing) do lines[#lines + 1] = "    " .. m end
  end
  return table.concat(lines, "\n")
end

return W

-- struct_compat: the batch and its reply travel as little-endian signed 64-bit integers,
-- packed and unpacked by the `struct` library Redis bundles with its Lua. Runtimes that emulate
-- Redis without it (fakeredis on lupa, in users' tests and ours) get this pure-Lua subset:
-- formats of '<' followed by 'i8' items only. Redis itself never runs the fallback.
-- KEYS: none   ARGV: none   returns: nothing (a prelude; defines `struct`)
local struct = struct or (function()
  local TWO_32 = 4294967296

  local function pack_one(value)
    -- Two's complement through two 32-bit halves: exact for every |value| < 2^53.
    local negative = value < 0
    local magnitude = negative and (-value - 1) or value
    local high = math.floor(magnitude / TWO_32)
    local low = magnitude - high * TWO_32
    local bytes = {}
    for half = 1, 2 do
      local word = half == 1 and low or high
      for _ = 1, 4 do
        local byte = word % 256
        bytes[#bytes + 1] = negative and (255 - byte) or byte
        word = (word - byte) / 256
      end
    end
    return string.char(unpack(bytes))
  end

  local function count_items(format)
    local items = 0
    for item in string.gmatch(string.sub(format, 2), 'i8') do
      items = items + 1
    end
    if string.sub(format, 1, 1) ~= '<' or #format ~= 1 + 2 * items then
      error('struct_compat: unsupported format ' .. format)
    end
    return items
  end

  local function unpack_one(data, pos)
    local negative = string.byte(data, pos + 7) >= 128
    local value = 0
    for i = 7, 0, -1 do
      local byte = string.byte(data, pos + i)
      value = value * 256 + (negative and (255 - byte) or byte)
    end
    return negative and (-value - 1) or value
  end

  return {
    pack = function(format, ...)
      local values = {...}
      local parts = {}
      for i = 1, count_items(format) do
        parts[i] = pack_one(values[i])
      end
      return table.concat(parts)
    end,
    unpack = function(format, data, pos)
      pos = pos or 1
      local values = {}
      for i = 1, count_items(format) do
        values[i] = unpack_one(data, pos)
        pos = pos + 8
      end
      values[#values + 1] = pos
      return unpack(values)
    end,
  }
end)()

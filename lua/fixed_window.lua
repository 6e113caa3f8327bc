-- fixed_window: one counter per calendar-aligned window (now - now % period).
-- KEYS[k]   state: window index * 2^21 + used, one integer (Redis keeps it inside the key's
--           object, no string allocated); "index used" once used reaches 2^21. The index
--           (now // period) stays below 2^32 until 2106, so the packed form is below 2^53.
--           TTL to the window's end.
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision(); its write stores the new count
local FIXED_WINDOW_PACK = 2097152 -- 2^21

local function fixed_window_read(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil, 0
  end
  local index, used = string.match(raw, '^(%d+) (%d+)$')
  if index then
    return tonumber(index), tonumber(used)
  end
  local packed = tonumber(raw)
  local stored_index = floordiv(packed, FIXED_WINDOW_PACK)
  return stored_index, packed - stored_index * FIXED_WINDOW_PACK
end

local function fixed_window(key, now, rule, cost)
  local index = floordiv(now, rule.period)
  local window_end_in = (index + 1) * rule.period - now
  local stored_index, stored_used = fixed_window_read(key)
  local used = 0
  if stored_index == index then
    used = stored_used
  end
  if used + cost <= rule.capacity then
    used = used + cost
    local ttl = 0
    if used > 0 then
      ttl = window_end_in
    end
    return decision(true, rule, rule.capacity - used, ttl, 0, 0, function()
      if used < FIXED_WINDOW_PACK then
        store_value(key, ttl, index * FIXED_WINDOW_PACK + used)
      else
        store_ints(key, ttl, {index, used})
      end
    end)
  end
  local reset = 0
  if used > 0 then
    reset = window_end_in
  end
  return decision(false, rule, math.max(0, rule.capacity - used), reset,
    refusal_retry(rule, cost, window_end_in), 0, nil)
end

-- fixed_window: one counter per calendar-aligned window (now - now % period).
-- KEYS[k]   state: window index * 2^21 + used, one integer (Redis keeps it inside the key's
--           object, no string allocated); "index used" once used reaches 2^21. The index
--           (now // period) stays below 2^32 until 2106, so the packed form is below 2^53.
--           TTL to the window's end, set by the window's first write; later writes in the
--           same window add to the packed integer with INCRBY, which keeps it.
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision(); its write stores the new count
local FIXED_WINDOW_PACK = 2097152 -- 2^21

local function fixed_window_read(key)
  -- The stored window index and count, and whether they are in the packed form.
  local raw = redis.call('GET', key)
  if not raw then
    return nil, 0, false
  end
  local packed = tonumber(raw)
  if packed then
    local stored_index = floordiv(packed, FIXED_WINDOW_PACK)
    return stored_index, packed - stored_index * FIXED_WINDOW_PACK, true
  end
  local index, used = string.match(raw, '^(%d+) (%d+)$')
  return tonumber(index), tonumber(used), false
end

local function fixed_window(key, now, rule, cost)
  local index = floordiv(now, rule.period)
  local window_end_in = (index + 1) * rule.period - now
  local stored_index, stored_used, packed = fixed_window_read(key)
  local used = 0
  local same_window = stored_index == index
  if same_window then
    used = stored_used
  end
  if used + cost <= rule.capacity then
    used = used + cost
    local ttl = 0
    if used > 0 then
      ttl = window_end_in
    end
    return decision(true, rule, rule.capacity - used, ttl, 0, 0, function()
      if same_window and packed and used < FIXED_WINDOW_PACK then
        -- The common case: one more request in a window already stored. Adding in place
        -- keeps the TTL and formats no number but the cost.
        redis.call('INCRBY', key, cost == 1 and '1' or cost)
      elseif used < FIXED_WINDOW_PACK then
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

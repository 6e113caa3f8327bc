-- fixed_window: one counter per calendar-aligned window (now - now % period).
-- KEYS[k]   state: used * 4 + (window index mod 4), one integer: small counts stay below
--           10,000, where Redis shares one integer object among all keys (no allocation
--           at all), and larger ones are kept inside the key's object. The index is
--           now // period. TTL to the window's end, set by the window's first write; later
--           writes in the same window add to the integer with INCRBY, which keeps it.
--           A key still held was written in this window or, within the millisecond Redis
--           keeps it past its expiry, the last one: the index mod 4 tells them apart.
--           ("index used", a string, is read too: development versions wrote it.)
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision()'s values; its write stores the new count
local FIXED_WINDOW_INDEXES = 4 -- window indexes told apart in the state

local function fixed_window_read(key, index)
  -- The count stored for window `index` (0 for any other window's), and whether the state
  -- is this window's integer (so INCRBY can add to it).
  local raw = redis.call('GET', key)
  if not raw then
    return 0, false
  end
  local packed = tonumber(raw)
  if packed then
    local residue = packed % FIXED_WINDOW_INDEXES
    if residue ~= index % FIXED_WINDOW_INDEXES then
      return 0, false
    end
    return (packed - residue) / FIXED_WINDOW_INDEXES, true
  end
  local stored_index, used = string.match(raw, '^(%d+) (%d+)$')
  if tonumber(stored_index) == index then
    return tonumber(used), false
  end
  return 0, false
end

local function fixed_window(key, now, rule, cost)
  local index = floordiv(now, rule.period)
  local window_end_in = (index + 1) * rule.period - now
  local used, in_place = fixed_window_read(key, index)
  if used + cost <= rule.capacity then
    used = used + cost
    local ttl = 0
    if used > 0 then
      ttl = window_end_in
    end
    return decision(true, rule.capacity - used, ttl, 0, 0, function()
      if in_place then
        -- The common case: one more request in a window already stored. Adding in place
        -- keeps the TTL and formats no number but the cost.
        redis.call('INCRBY', key, cost == 1 and '4' or int_arg(cost * FIXED_WINDOW_INDEXES))
      else
        store_value(key, ttl,
          int_arg(used * FIXED_WINDOW_INDEXES + index % FIXED_WINDOW_INDEXES))
      end
    end)
  end
  local reset = 0
  if used > 0 then
    reset = window_end_in
  end
  return decision(false, math.max(0, rule.capacity - used), reset,
    refusal_retry(rule, cost, window_end_in), 0, nil)
end

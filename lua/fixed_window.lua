-- fixed_window: one counter per calendar-aligned window (now - now % period).
-- KEYS[k]   state "window_start_us used", TTL to the window's end
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision(); its write stores the new count
local function fixed_window(key, now, rule, cost)
  local window_start = floordiv(now, rule.period) * rule.period
  local window_end_in = window_start + rule.period - now
  local state = read_ints(key)
  local used = 0
  if state and state[1] == window_start then
    used = state[2]
  end
  if used + cost <= rule.capacity then
    used = used + cost
    local ttl = 0
    if used > 0 then
      ttl = window_end_in
    end
    return decision(true, rule, rule.capacity - used, ttl, 0, 0, function()
      store_ints(key, ttl, {window_start, used})
    end)
  end
  local reset = 0
  if used > 0 then
    reset = window_end_in
  end
  return decision(false, rule, math.max(0, rule.capacity - used), reset,
    refusal_retry(rule, cost, window_end_in), 0, nil)
end

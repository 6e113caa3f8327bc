-- sliding_window: weighted two-window counter over calendar-aligned windows.
-- KEYS[k]   state "window_index current previous" (index = now // period: shorter than the
--           start in µs, so the value fits Redis's smallest string), TTL to the end of the
--           next window
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision(); its write stores the counts
-- The weighting runs on doubles in the same order as sliding_window.py, so both round alike.
local function sliding_window_reset(current, previous, period, elapsed)
  if current > 0 then
    return 2 * period - elapsed
  elseif previous > 0 then
    return period - elapsed
  end
  return 0
end

local function sliding_window_weighted(previous, uncovered, period)
  -- ceil(previous * uncovered / period): the weight is rounded up, as in sliding_window.py.
  return math.ceil(previous * uncovered / period)
end

local function sliding_window_wait(room, count, period)
  -- The least elapsed time at which `count`, weighted by the rest of the window, fits `room`;
  -- exact in integers, stepped on should float rounding of large products disagree.
  local elapsed = period - math.floor(room * period / count)
  while sliding_window_weighted(count, period - elapsed, period) > room do
    elapsed = elapsed + 1
  end
  return elapsed
end

local function sliding_window(key, now, rule, cost)
  local period = rule.period
  local elapsed = now - floordiv(now, period) * period
  local window_start = now - elapsed
  local index = floordiv(now, period)
  local current, previous = 0, 0
  local state = read_ints(key)
  if state then
    if state[1] == index then
      current, previous = state[2], state[3]
    elseif state[1] == index - 1 then
      previous = state[2]
    end
  end
  local used = sliding_window_weighted(previous, period - elapsed, period) + current
  if used + cost <= rule.capacity then
    current = current + cost
    used = used + cost
    local ttl = window_start + 2 * period - now
    return decision(true, rule, rule.capacity - used,
      sliding_window_reset(current, previous, period, elapsed), 0, 0, function()
        store_ints(key, ttl, {index, current, previous})
      end)
  end
  local room = rule.capacity - current - cost
  local wait
  if cost > rule.capacity then
    wait = period
  elseif room >= 0 then
    wait = math.max(1, sliding_window_wait(room, previous, period) - elapsed)
  else
    local later = math.max(0, sliding_window_wait(rule.capacity - cost, current, period))
    wait = period - elapsed + later
  end
  return decision(false, rule, math.max(0, rule.capacity - used),
    sliding_window_reset(current, previous, period, elapsed), wait, 0, nil)
end

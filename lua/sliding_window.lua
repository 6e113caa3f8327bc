-- sliding_window: weighted two-window counter over calendar-aligned windows.
-- KEYS[k]   state: (previous * 2^25 + current) * 4 + (window index mod 4), one integer below
--           2^53: a first window's small count stays below 10,000, where Redis shares one
--           integer object among all keys (no allocation at all), and larger states are
--           kept inside the key's object; "index current previous", a string, once a count
--           reaches 2^25 (and as development versions wrote it: both are read). The index
--           is now // period. TTL to the end of the next window, set by the window's first
--           write; later writes in the same window add to the integer with INCRBY, which
--           keeps it. A key still held was written in this window, the last or, within the
--           millisecond Redis keeps it past its expiry, the one before: the index mod 4
--           tells them apart, and two windows back reads as stale, like any older state.
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision()'s values; its write stores the counts
-- The weighting runs on doubles in the same order as sliding_window.py, so both round alike.
local SLIDING_WINDOW_PACK = 33554432 -- 2^25: counts below it are packed
local SLIDING_WINDOW_INDEXES = 4 -- window indexes told apart in the packed form

local function sliding_window_read(key, index)
  -- The stored window index, current and previous, or nil, and whether the state is the
  -- packed integer. A packed index is taken as the latest index up to `index` with its
  -- residue: index, index - 1, or older (stale).
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local packed = tonumber(raw)
  if not packed then
    local stored_index, current, previous = string.match(raw, '^(%d+) (%d+) (%d+)$')
    return tonumber(stored_index), tonumber(current), tonumber(previous), false
  end
  local residue = packed % SLIDING_WINDOW_INDEXES
  local counts = (packed - residue) / SLIDING_WINDOW_INDEXES
  local current = counts % SLIDING_WINDOW_PACK
  local behind = (index - residue) % SLIDING_WINDOW_INDEXES
  return index - behind, current, (counts - current) / SLIDING_WINDOW_PACK, true
end

local function sliding_window_store(key, ttl, index, current, previous)
  if current < SLIDING_WINDOW_PACK and previous < SLIDING_WINDOW_PACK then
    store_value(key, ttl, int_arg((previous * SLIDING_WINDOW_PACK + current)
      * SLIDING_WINDOW_INDEXES + index % SLIDING_WINDOW_INDEXES))
  else
    store_ints(key, ttl, {index, current, previous})
  end
end

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
  local stored_index, stored_current, stored_previous, packed = sliding_window_read(key, index)
  local same_window = stored_index == index
  if same_window then
    current, previous = stored_current, stored_previous
  elseif stored_index == index - 1 then
    previous = stored_current
  end
  local used = sliding_window_weighted(previous, period - elapsed, period) + current
  if used + cost <= rule.capacity then
    current = current + cost
    used = used + cost
    local ttl = window_start + 2 * period - now
    return decision(true, rule.capacity - used,
      sliding_window_reset(current, previous, period, elapsed), 0, 0, function()
        if same_window and packed and current < SLIDING_WINDOW_PACK then
          -- One more request in a window already stored: add to `current` in place, which
          -- keeps the TTL and formats no number but the cost.
          redis.call('INCRBY', key, cost == 1 and '4' or int_arg(cost * SLIDING_WINDOW_INDEXES))
        else
          sliding_window_store(key, ttl, index, current, previous)
        end
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
  return decision(false, math.max(0, rule.capacity - used),
    sliding_window_reset(current, previous, period, elapsed), wait, 0, nil)
end

-- sliding_window: weighted two-window counter over calendar-aligned windows.
-- KEYS[k]   state: (window index mod 2048) * 2^42 + current * 2^21 + previous, one integer
--           below 2^53 (Redis keeps it inside the key's object, no string allocated);
--           "index current previous" once a count reaches 2^21 (the only form earlier
--           versions wrote; both are read). The window index is now // period. TTL to the
--           end of the next window: PX rounds it up by less than 1 ms and Redis keeps a key
--           through the millisecond it expires at, so a key still held was written in window
--           index, index - 1 or, within that millisecond, index - 2. The index mod 2048 tells
--           them apart; index - 2 reads as stale, like any older state.
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision(); its write stores the counts
-- The weighting runs on doubles in the same order as sliding_window.py, so both round alike.
local SLIDING_WINDOW_PACK = 2097152 -- 2^21: counts below it are packed
local SLIDING_WINDOW_INDEXES = 2048 -- window indexes kept apart in the packed form
local SLIDING_WINDOW_INDEX_PACK = SLIDING_WINDOW_PACK * SLIDING_WINDOW_PACK -- 2^42

local function sliding_window_read(key, index)
  -- The stored window index, current and previous, or nil. A packed index is taken as the
  -- latest index up to `index` with its residue: index, index - 1, or older (stale).
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local stored_index, current, previous = string.match(raw, '^(%d+) (%d+) (%d+)$')
  if stored_index then
    return tonumber(stored_index), tonumber(current), tonumber(previous)
  end
  local packed = tonumber(raw)
  local residue = floordiv(packed, SLIDING_WINDOW_INDEX_PACK)
  local counts = packed - residue * SLIDING_WINDOW_INDEX_PACK
  local packed_current = floordiv(counts, SLIDING_WINDOW_PACK)
  local behind = (index - residue) % SLIDING_WINDOW_INDEXES
  return index - behind, packed_current, counts - packed_current * SLIDING_WINDOW_PACK
end

local function sliding_window_store(key, ttl, index, current, previous)
  if current < SLIDING_WINDOW_PACK and previous < SLIDING_WINDOW_PACK then
    local residue = index % SLIDING_WINDOW_INDEXES
    store_value(key, ttl, fmt(residue * SLIDING_WINDOW_INDEX_PACK
      + current * SLIDING_WINDOW_PACK + previous))
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
  local stored_index, stored_current, stored_previous = sliding_window_read(key, index)
  if stored_index == index then
    current, previous = stored_current, stored_previous
  elseif stored_index == index - 1 then
    previous = stored_current
  end
  local used = sliding_window_weighted(previous, period - elapsed, period) + current
  if used + cost <= rule.capacity then
    current = current + cost
    used = used + cost
    local ttl = window_start + 2 * period - now
    return decision(true, rule, rule.capacity - used,
      sliding_window_reset(current, previous, period, elapsed), 0, 0, function()
        sliding_window_store(key, ttl, index, current, previous)
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

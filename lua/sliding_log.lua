-- sliding_log: exact log of admission times, one list entry per unit, oldest first.
-- KEYS[k]   list of admission times (integer microseconds), TTL until the newest expires
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision()'s values; its write trims expired entries and appends `cost` entries
local function sliding_log_reset(key, used, period, now)
  -- Until the newest live entry expires: read only when no newer entry is being added.
  if used == 0 then
    return 0
  end
  return tonumber(redis.call('LINDEX', key, -1)) + period - now
end

local function sliding_log(key, now, rule, cost)
  local period = rule.period
  local length = redis.call('LLEN', key)
  local expired = 0
  while expired < length and tonumber(redis.call('LINDEX', key, expired)) <= now - period do
    expired = expired + 1
  end
  local used = length - expired
  if used + cost <= rule.capacity then
    local reset = period  -- this request's entries are the newest
    if cost == 0 then
      reset = sliding_log_reset(key, used, period, now)
    end
    -- The write runs only for a cost above 0 (a peek writes nothing), so `reset` is a period.
    return decision(true, rule.capacity - used - cost, reset, 0, 0, function()
      if expired > 0 then
        redis.call('LTRIM', key, expired, -1)
      end
      local stamp = int_arg(now)
      local remaining = cost
      while remaining > 0 do
        local batch = {}
        for i = 1, math.min(remaining, 1000) do
          batch[i] = stamp
        end
        redis.call('RPUSH', key, unpack(batch))
        remaining = remaining - #batch
      end
      redis.call('PEXPIRE', key, expire_ms(reset))
    end)
  end
  local reset = sliding_log_reset(key, used, period, now)
  local must_expire = used + cost - rule.capacity
  local wait = reset
  if must_expire <= used then
    wait = tonumber(redis.call('LINDEX', key, expired + must_expire - 1)) + period - now
  end
  return decision(false, math.max(0, rule.capacity - used), reset,
    refusal_retry(rule, cost, wait), 0, nil)
end

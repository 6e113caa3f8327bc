-- sliding_log: exact log of admission times, one list entry per unit, oldest first.
-- KEYS[k]   list of admission times (integer microseconds), TTL until the newest expires
-- rule      count, period, capacity (= count)          cost: units to charge
-- returns   decision()'s values; its write trims expired entries and appends `cost` entries
local function sliding_log(key, now, rule, cost)
  local period = rule.period
  local length = redis.call('LLEN', key)
  local expired = 0
  while expired < length and tonumber(redis.call('LINDEX', key, expired)) <= now - period do
    expired = expired + 1
  end
  local used = length - expired
  local newest = nil
  if used > 0 then
    newest = tonumber(redis.call('LINDEX', key, -1))
  end
  if used + cost <= rule.capacity then
    if cost > 0 then
      newest = now
    end
    local reset = 0
    if newest then
      reset = newest + period - now
    end
    return decision(true, rule, rule.capacity - used - cost, reset, 0, 0, function()
      if reset <= 0 then
        redis.call('DEL', key)
        return
      end
      if expired > 0 then
        redis.call('LTRIM', key, expired, -1)
      end
      local stamp = fmt(now)
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
  local reset = 0
  if newest then
    reset = newest + period - now
  end
  local must_expire = used + cost - rule.capacity
  local wait = reset
  if must_expire <= used then
    wait = tonumber(redis.call('LINDEX', key, expired + must_expire - 1)) + period - now
  end
  return decision(false, rule, math.max(0, rule.capacity - used), reset,
    refusal_retry(rule, cost, wait), 0, nil)
end

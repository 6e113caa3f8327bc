-- concurrent: a slot among `capacity` for one request in flight; each slot is a lease that
-- expires on its own if the worker holding it dies before releasing it.
-- KEYS[k]   sorted set: member = request token, score = lease expiry (integer microseconds)
-- capacity  requests in flight at most; lease_us: how long an unreleased slot is kept
-- returns   decision()'s values; its write drops expired leases, adds this request's
local function concurrent(key, now, capacity, lease, token)
  local held = redis.call('ZCOUNT', key, '(' .. fmt(now), '+inf')
  if held < capacity then
    local write = function()
      redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
      redis.call('ZADD', key, fmt(now + lease), token)
      redis.call('PEXPIRE', key, expire_ms(lease))
    end
    return decision(true, capacity - held - 1, lease, 0, 0, write)
  end
  local first = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(now), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local last = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. fmt(now), 'WITHSCORES', 'LIMIT', 0, 1)
  local retry = math.min(1000000, tonumber(first[2]) - now)  -- as MAX_RETRY_US in concurrent.py
  return decision(false, 0, tonumber(last[2]) - now, retry, 0, nil)
end

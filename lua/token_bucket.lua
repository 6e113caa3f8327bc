-- token_bucket: `capacity` tokens, one more every `emission` microseconds, whole tokens only.
-- KEYS[k]   state "tokens refilled_at_us", TTL until the bucket is full again
-- rule      capacity (burst), emission (µs per token), period    cost: tokens to take
-- returns   decision()'s values; its write stores the tokens left
local function token_bucket(key, now, rule, cost)
  local capacity, interval = rule.capacity, rule.emission
  local tokens, refilled_at = capacity, now
  local state = read_ints(key)
  if state then
    tokens, refilled_at = state[1], state[2]
  end
  if tokens < capacity then
    local earned = floordiv(math.max(0, now - refilled_at), interval)
    tokens = math.min(capacity, tokens + earned)
    refilled_at = refilled_at + earned * interval
  end
  if tokens >= capacity then
    tokens, refilled_at = capacity, now
  end
  local into_interval = math.max(0, now - refilled_at)
  if cost <= tokens then
    tokens = tokens - cost
    local reset = 0
    if tokens < capacity then
      reset = (capacity - tokens) * interval - into_interval
    end
    return decision(true, tokens, reset, 0, 0, function()
      store_ints(key, reset, {tokens, refilled_at})
    end)
  end
  return decision(false, tokens, (capacity - tokens) * interval - into_interval,
    refusal_retry(rule, cost, (cost - tokens) * interval - into_interval), 0, nil)
end

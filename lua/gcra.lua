-- gcra: admit `cost` cells unless the theoretical arrival time is too far ahead.
-- KEYS[k]   TAT of this identity, integer microseconds, TTL until it passes
-- rule      capacity (burst), emission (µs per cell), period      cost: cells
-- returns   decision()'s values; its write stores the new TAT
local function gcra(key, now, rule, cost)
  local interval = rule.emission
  local window = rule.capacity * interval
  local tat = now
  local state = read_ints(key)
  if state then
    tat = math.max(state[1], now)
  end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - window
  if cost <= rule.capacity and now >= allow_at then
    return decision(true, math.max(0, floordiv(window - (new_tat - now), interval)),
      new_tat - now, 0, 0, function()
        store_value(key, new_tat - now, int_arg(new_tat))
      end)
  end
  return decision(false, math.max(0, floordiv(window - (tat - now), interval)),
    tat - now, refusal_retry(rule, cost, allow_at - now), 0, nil)
end

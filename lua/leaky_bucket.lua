-- leaky_bucket: a queue of `capacity` units drained one per `emission` microseconds.
-- KEYS[k]   state "drained_at_us" (when the queue is empty), TTL until then
-- rule      capacity (burst), emission, max_delay (µs), period     cost: units to queue
-- returns   decision()'s values, with delay = how long the admitted request waits for its turn
local function leaky_bucket(key, now, rule, cost)
  local capacity, interval = rule.capacity, rule.emission
  local drained_at = now
  local state = read_ints(key)
  if state then
    drained_at = state[1]
  end
  local backlog = math.max(0, drained_at - now)
  local queued = ceildiv(backlog, interval)
  local fits = queued + cost <= capacity
  -- A peek (cost 0) queues nothing, so it neither waits nor is refused for the wait.
  if fits and (backlog <= rule.max_delay or cost == 0) then
    local drained_in = backlog + cost * interval
    local delay = 0
    if cost > 0 then
      delay = backlog
    end
    return decision(true, capacity - queued - cost, drained_in, 0, delay, function()
      store_value(key, drained_in, int_arg(now + drained_in))
    end)
  end
  -- Admitted once the delay is short enough and the cost fits, whichever comes last.
  local wait = math.max(backlog - rule.max_delay, backlog - (capacity - cost) * interval)
  return decision(false, math.max(0, capacity - queued), backlog,
    refusal_retry(rule, cost, wait), 0, nil)
end

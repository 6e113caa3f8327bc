-- common: integer helpers and state I/O shared by the algorithm files.
-- KEYS: none   ARGV: none   returns: nothing (a prelude)
-- Every number is an integer below 2^53 (exact in Lua's doubles). Numbers go to redis.call
-- through int_arg, as numbers where Redis writes them as plain integers, which is cheaper than
-- string.format. States are one integer or strings of space-separated integers, written with
-- %.0f (tostring would print 1.7e+15).
-- Reads `now_us` (the clock prelude) to set expiries from the decision time.

local function floordiv(a, b)
  -- Python's a // b for integers; corrects the rounding of a / b near a whole quotient.
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then
    q = q - 1
  elseif r >= b then
    q = q + 1
  end
  return q
end

local function ceildiv(a, b)
  return -floordiv(-a, b)
end

local function fmt(n)
  return string.format('%.0f', n)
end

local INT_ARG_EXPONENT_FORM = 100000000 -- 1e8: see int_arg

local function int_arg(n)
  -- The integer n as an argument for redis.call. Redis 7.2.0 to 7.2.4 write a number argument
  -- in the shortest form, "1e+08" for any integer with 8 or more trailing zeros, which
  -- INCRBY, PX and the readers of a state would not take for an integer (fixed in 7.2.5,
  -- redis/redis#13115; 7.0 and 7.2.5+ write integers plainly). Those are formatted here; any
  -- other number goes as is, which costs less than formatting it.
  if n % INT_ARG_EXPONENT_FORM == 0 and n ~= 0 then
    return fmt(n)
  end
  return n
end

local function read_ints(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local single = tonumber(raw)
  if single then
    return {single}
  end
  local values = {}
  for field in string.gmatch(raw, '%S+') do
    values[#values + 1] = tonumber(field)
  end
  return values
end

local function expire_ms(ttl_us)
  -- PX for a state that matters until now_us + ttl_us. Redis adds PX to its own clock in
  -- whole milliseconds (now_us truncated), so count from there: rounding ttl_us alone up
  -- let a key vanish up to 1 ms before its state stopped mattering.
  return int_arg(ceildiv(now_us % 1000 + ttl_us, 1000))
end

local function store_value(key, ttl_us, value)
  -- ttl_us <= 0: the state is equivalent to none, so drop it.
  if ttl_us <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('SET', key, value, 'PX', expire_ms(ttl_us))
end

local function store_ints(key, ttl_us, values)
  local fields = {}
  for i = 1, #values do
    fields[i] = fmt(values[i])
  end
  store_value(key, ttl_us, table.concat(fields, ' '))
end

local function refusal_retry(rule, cost, wait_us)
  if cost > rule.capacity then
    return rule.period
  end
  return wait_us
end

local function decision(allowed, remaining, reset_us, retry_us, delay_us, write)
  -- What every algorithm returns, as multiple values (a table per check costs more):
  -- allowed, remaining, reset_us, wait_us, and the write to perform if the whole batch admits
  -- (nil when refused). wait_us is retry_us when refused and delay_us when admitted (an
  -- admitted request has nothing to retry, a refused one waits in no queue). The limit is
  -- the rule's capacity, which the caller knows: it is not sent back. A write must not read
  -- `rule`: the dispatcher reuses that table for the next check.
  if allowed then
    return true, remaining, reset_us, delay_us, write
  end
  return false, remaining, reset_us, retry_us, nil
end

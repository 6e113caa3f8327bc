-- dispatch: evaluate a request's checks in order, short-circuit at the first refusal, and
-- write nothing unless every check admits (all-or-nothing). Assembled after clock.lua,
-- common.lua, the six algorithm files and concurrent.lua, which define `now_us` and the
-- local functions.
-- Order: an allow-listed subject admits the request unchecked; a blocked one refuses it;
-- then the checks; then the concurrency slots; writes only if all of them admit. A refusal
-- (check, slot or block) increments the refused subject's counter.
--
-- KEYS      n check keys; 3 per subject j (allow-list entry, block, refusal counter);
--           s slot keys; the config hash if ARGV[5] = 1. In that order.
-- ARGV[1]   n checks   ARGV[2] m subjects   ARGV[3] alert window (µs) of refusal counters
-- ARGV[4]   s slots    ARGV[5] 1 if the config hash is in KEYS (its `version` is returned)
-- then 9 fields per check:
--           algorithm name, count, period_us, capacity, emission_us, max_delay_us, cost,
--           dry_run (1: report, never refuse, charge only when it admits),
--           subject (1..m: whose refusal counter a refusal increments; 0: none)
-- then 4 fields per slot: capacity, lease_us, token, subject
-- returns   {refused_index (0: admitted; 1..n a check; n+k slot k), now_us,
--            blocked_subject (0: none), block_remaining_us (-1: no expiry),
--            refusals (the refused subject's count), allowed_by_list (1: nothing checked),
--            config_version, then 6 integers per evaluated check or refusing slot:
--            allowed (1/0), limit, remaining, reset_after_us, retry_after_us, delay_us}
-- A check of cost 0 is a peek: decided, never written.
local ALGORITHMS = {
  fixed_window = fixed_window,
  sliding_window = sliding_window,
  sliding_log = sliding_log,
  token_bucket = token_bucket,
  leaky_bucket = leaky_bucket,
  gcra = gcra,
}
local HEADER = 5
local CHECK_STRIDE = 9
local SLOT_STRIDE = 4

local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local alert_window = tonumber(ARGV[3])
local s = tonumber(ARGV[4])
local reply = {0, now_us, 0, 0, 0, 0, 0}
if ARGV[5] == '1' then
  reply[7] = tonumber(redis.call('HGET', KEYS[n + 3 * m + s + 1], 'version') or '0')
end

local function count_refusal(j)
  if j < 1 or alert_window <= 0 then
    return 0
  end
  local key = KEYS[n + 3 * j]
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('PEXPIRE', key, expire_ms(alert_window))
  end
  return count
end

local function report(d)
  local at = #reply
  reply[at + 1] = d.allowed and 1 or 0
  reply[at + 2] = d.limit
  reply[at + 3] = d.remaining
  reply[at + 4] = d.reset
  reply[at + 5] = d.retry
  reply[at + 6] = d.delay
end

for j = 1, m do
  if redis.call('EXISTS', KEYS[n + 3 * j - 2]) == 1 then
    reply[6] = 1
    return reply
  end
end
for j = 1, m do
  local ttl = redis.call('PTTL', KEYS[n + 3 * j - 1])
  if ttl > 0 or ttl == -1 then
    reply[3] = j
    reply[4] = ttl == -1 and -1 or ttl * 1000
    reply[5] = count_refusal(j)
    return reply
  end
end

local writes = {}
for i = 1, n do
  local base = HEADER + (i - 1) * CHECK_STRIDE
  local decide = ALGORITHMS[ARGV[base + 1]]
  if not decide then
    return redis.error_reply('flask-quota: unknown algorithm ' .. tostring(ARGV[base + 1]))
  end
  local rule = {
    count = tonumber(ARGV[base + 2]),
    period = tonumber(ARGV[base + 3]),
    capacity = tonumber(ARGV[base + 4]),
    emission = tonumber(ARGV[base + 5]),
    max_delay = tonumber(ARGV[base + 6]),
  }
  local cost = tonumber(ARGV[base + 7])
  local d = decide(KEYS[i], now_us, rule, cost)
  report(d)
  if d.allowed then
    if cost > 0 then
      writes[#writes + 1] = d.write
    end
  elseif ARGV[base + 8] ~= '1' then
    reply[1] = i
    reply[5] = count_refusal(tonumber(ARGV[base + 9]))
    return reply
  end
end

local slots = {}
for k = 1, s do
  local base = HEADER + n * CHECK_STRIDE + (k - 1) * SLOT_STRIDE
  local d = concurrent(KEYS[n + 3 * m + k], now_us, tonumber(ARGV[base + 1]),
    tonumber(ARGV[base + 2]), ARGV[base + 3])
  if not d.allowed then
    report(d)
    reply[1] = n + k
    reply[5] = count_refusal(tonumber(ARGV[base + 4]))
    return reply
  end
  slots[#slots + 1] = d.write
end

for i = 1, #writes do
  writes[i]()
end
for k = 1, #slots do
  slots[k]()
end
return reply

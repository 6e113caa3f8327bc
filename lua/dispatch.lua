-- dispatch: evaluate a request's checks in order, short-circuit at the first refusal, and
-- write nothing unless every check admits (all-or-nothing). Assembled after clock.lua,
-- common.lua, the six algorithm files and concurrent.lua, which define `now_us` and the
-- local functions.
-- Order: an allow-listed subject admits the request unchecked; a blocked one refuses it;
-- then the checks; then the concurrency slots; writes only if all of them admit. A refusal
-- (check, slot or block) increments the refused subject's counter.
--
-- KEYS      n check keys; 3 per subject j (allow-list entry, block, refusal counter);
--           s slot keys; the config hash if field 5 = 1. In that order.
-- ARGV[1]   every number and name of the batch as one space-separated string: each
--           argument costs the client more to send than a split costs here. Its fields:
--           1 n checks   2 m subjects   3 alert window (µs) of refusal counters
--           4 s slots    5 1 if the config hash is in KEYS (its `version` is returned)
-- then 9 fields per check:
--           algorithm name, count, period_us, capacity, emission_us, max_delay_us, cost,
--           dry_run (1: report, never refuse, charge only when it admits),
--           subject (1..m: whose refusal counter a refusal increments; 0: none)
-- then 4 fields per slot: capacity, lease_us, token, subject
-- returns   one space-separated string of integers (one bulk reply parses faster than many):
--           {refused_index (0: admitted; 1..n a check; n+k slot k), now_us,
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

local args = {}
for field in string.gmatch(ARGV[1], '%S+') do
  args[#args + 1] = field
end
local n = tonumber(args[1])
local m = tonumber(args[2])
local alert_window = tonumber(args[3])
local s = tonumber(args[4])
local reply = {0, now_us, 0, 0, 0, 0, 0}
-- Without the config hash, look every list up; with it, only the lists ever used (the
-- admin commands set `lists:allow` / `lists:block` on first use and never clear them).
local use_allow, use_block = true, true
if args[5] == '1' then
  local config = redis.call('HMGET', KEYS[n + 3 * m + s + 1], 'version', 'lists:allow',
    'lists:block')
  reply[7] = tonumber(config[1] or '0')
  use_allow, use_block = config[2] == '1', config[3] == '1'
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

local function encode(values)
  for i = 1, #values do
    values[i] = fmt(values[i])
  end
  return table.concat(values, ' ')
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

for j = 1, use_allow and m or 0 do
  if redis.call('EXISTS', KEYS[n + 3 * j - 2]) == 1 then
    reply[6] = 1
    return encode(reply)
  end
end
for j = 1, use_block and m or 0 do
  local ttl = redis.call('PTTL', KEYS[n + 3 * j - 1])
  if ttl > 0 or ttl == -1 then
    reply[3] = j
    reply[4] = ttl == -1 and -1 or ttl * 1000
    reply[5] = count_refusal(j)
    return encode(reply)
  end
end

local writes = {}
for i = 1, n do
  local base = HEADER + (i - 1) * CHECK_STRIDE
  local decide = ALGORITHMS[args[base + 1]]
  if not decide then
    return redis.error_reply('flask-quota: unknown algorithm ' .. tostring(args[base + 1]))
  end
  local rule = {
    count = tonumber(args[base + 2]),
    period = tonumber(args[base + 3]),
    capacity = tonumber(args[base + 4]),
    emission = tonumber(args[base + 5]),
    max_delay = tonumber(args[base + 6]),
  }
  local cost = tonumber(args[base + 7])
  local d = decide(KEYS[i], now_us, rule, cost)
  report(d)
  if d.allowed then
    if cost > 0 then
      writes[#writes + 1] = d.write
    end
  elseif args[base + 8] ~= '1' then
    reply[1] = i
    reply[5] = count_refusal(tonumber(args[base + 9]))
    return encode(reply)
  end
end

local slots = {}
for k = 1, s do
  local base = HEADER + n * CHECK_STRIDE + (k - 1) * SLOT_STRIDE
  local d = concurrent(KEYS[n + 3 * m + k], now_us, tonumber(args[base + 1]),
    tonumber(args[base + 2]), args[base + 3])
  if not d.allowed then
    report(d)
    reply[1] = n + k
    reply[5] = count_refusal(tonumber(args[base + 4]))
    return encode(reply)
  end
  slots[#slots + 1] = d.write
end

for i = 1, #writes do
  writes[i]()
end
for k = 1, #slots do
  slots[k]()
end
return encode(reply)

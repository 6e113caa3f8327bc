-- dispatch: evaluate a request's checks in order, short-circuit at the first refusal, and
-- write nothing unless every check admits (all-or-nothing). Assembled after clock.lua,
-- common.lua and the six algorithm files, which define `now_us` and the local functions.
-- Before any check: an allow-listed subject admits the request unchecked; a blocked one
-- refuses it. A refusal (limit or block) increments the refused subject's counter.
--
-- KEYS[i]   the state key of check i (i = 1..n); then 3 keys per subject j (j = 1..m):
--           KEYS[n+3j-2] allow-list entry, KEYS[n+3j-1] block, KEYS[n+3j] refusal counter
-- ARGV[1]   n, the number of checks     ARGV[2]  m, the number of subjects
-- ARGV[3]   alert window (µs): a subject's refusal counter expires this long after its first
-- ARGV[4 + (i-1)*9 ..]  check i, 9 fields:
--           algorithm name, count, period_us, capacity, emission_us, max_delay_us, cost,
--           dry_run (1: report, never refuse, charge only when it admits),
--           subject (1..m: whose refusal counter a refusal increments; 0: none)
-- returns   {refused_index (0: admitted), now_us, blocked_subject (0: none),
--            block_remaining_us (-1: no expiry), refusals (the refused subject's count),
--            allowed_by_list (1: an allow-listed subject, nothing checked),
--            then 6 integers per evaluated check:
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
local STRIDE = 9
local HEADER = 3

local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local alert_window = tonumber(ARGV[3])
local reply = {0, now_us, 0, 0, 0, 0}

local function count_refusal(j)
  if j < 1 or alert_window <= 0 then
    return 0
  end
  local key = KEYS[n + 3 * j]
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('PEXPIRE', key, fmt(ceildiv(alert_window, 1000)))
  end
  return count
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
  local base = HEADER + (i - 1) * STRIDE
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
  local dry_run = ARGV[base + 8] == '1'
  local d = decide(KEYS[i], now_us, rule, cost)
  local allowed = 0
  if d.allowed then
    allowed = 1
    if cost > 0 then
      writes[#writes + 1] = d.write
    end
  end
  local at = #reply
  reply[at + 1] = allowed
  reply[at + 2] = d.limit
  reply[at + 3] = d.remaining
  reply[at + 4] = d.reset
  reply[at + 5] = d.retry
  reply[at + 6] = d.delay
  if not d.allowed and not dry_run then
    reply[1] = i
    reply[5] = count_refusal(tonumber(ARGV[base + 9]))
    return reply
  end
end
for i = 1, #writes do
  writes[i]()
end
return reply

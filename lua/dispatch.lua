-- dispatch: evaluate a request's checks in order, short-circuit at the first refusal, and
-- write nothing unless every check admits (all-or-nothing). Assembled after clock.lua,
-- common.lua and the six algorithm files, which define `now_us` and the local functions.
--
-- KEYS[i]   the state key of check i (i = 1..n)
-- ARGV[1]   n, the number of checks
-- ARGV[2 + (i-1)*8 ..]  check i, 8 fields:
--           algorithm name, count, period_us, capacity, emission_us, max_delay_us, cost,
--           dry_run (1: report, never refuse, charge only when it admits)
-- returns   {refused_index (0: admitted), now_us, then 6 integers per evaluated check:
--            allowed (1/0), limit, remaining, reset_after_us, retry_after_us, delay_us}
local ALGORITHMS = {
  fixed_window = fixed_window,
  sliding_window = sliding_window,
  sliding_log = sliding_log,
  token_bucket = token_bucket,
  leaky_bucket = leaky_bucket,
  gcra = gcra,
}
local STRIDE = 8

local n = tonumber(ARGV[1])
local reply = {0, now_us}
local writes = {}
for i = 1, n do
  local base = 1 + (i - 1) * STRIDE
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
    writes[#writes + 1] = d.write
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
    return reply
  end
end
for i = 1, #writes do
  writes[i]()
end
return reply

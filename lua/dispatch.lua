-- dispatch: evaluate a request's checks in order, short-circuit at the first refusal, and
-- write nothing unless every check admits (all-or-nothing). Assembled after clock.lua,
-- common.lua, the six algorithm files and concurrent.lua, which define `now_us` and the
-- local functions; each algorithm file comes wrapped in `load_<name>()`, which defines and
-- returns its decide function, so a call defines only the algorithms its checks use.
-- Order: an allow-listed subject admits the request unchecked; a blocked one refuses it;
-- then the checks; then the concurrency slots; writes only if all of them admit. A refusal
-- (check, slot or block) increments the refused subject's counter.
--
-- KEYS      n check keys; per subject j its refusal counter, then, if the lists are sent
--           (flags bit 2), its allow-list entry and block; s slot keys; the config hash if
--           flags bit 1. In that order.
-- ARGV[1]   every number of the batch as little-endian signed 64-bit integers (`struct`):
--           no text to split or parse on either side, one bulk string to send. Its fields:
--           1 n checks   2 m subjects   3 alert window (µs) of refusal counters
--           4 s slots    5 flags: 1 the config hash is in KEYS (its `version` is
--           returned), 2 the subjects' allow-list and block keys are in KEYS
-- then 9 fields per check:
--           algorithm (its index in LOADERS), count, period_us, capacity, emission_us,
--           max_delay_us, cost, dry_run (1: report, never refuse, charge only when it admits),
--           subject (1..m: whose refusal counter a refusal increments; 0: none)
-- then 3 fields per slot: capacity, lease_us, subject
-- ARGV[1+k] slot k's token
-- returns   one string of little-endian signed 64-bit integers:
--           {refused_index (0: admitted; 1..n a check; n+k slot k), now_us,
--            blocked_subject (0: none), block_remaining_us (-1: no expiry),
--            refusals (the refused subject's count), allowed_by_list (1: nothing checked),
--            config_version, lists_needed (1: the config hash says a list is in use but
--            its keys were not sent: nothing was done, call again with them),
--            then 4 integers per evaluated check or refusing slot:
--            allowed (1/0), remaining, reset_after_us, wait_us (retry_after_us when refused,
--            delay_us when admitted)}. The limit is not sent back: the caller knows it.
--           The reply is packed once, at the end: one `struct.pack` for the whole of it.
-- A check of cost 0 is a peek: decided, never written.
local LOADERS = {  -- each returns its algorithm's decide function (see flask_quota/_lua.py)
  load_fixed_window, load_sliding_window, load_sliding_log, load_token_bucket,
  load_leaky_bucket, load_gcra,
}
local algorithms = {}  -- decide functions loaded by this call, by index in LOADERS
local HEADER = '<i8i8i8i8i8'
local CHECK = '<i8i8i8i8i8i8i8i8i8'
local SLOT = '<i8i8i8'
local REPLY_HEADER_FIELDS = 8

local batch = ARGV[1]
local n, m, alert_window, s, flags, pos = struct.unpack(HEADER, batch)
local has_config, lists_sent = flags % 2 == 1, flags >= 2
local stride = lists_sent and 3 or 1  -- keys per subject
-- Sized for the header and 4 decisions: filling a table past its size reallocates it.
local reply = {0, now_us, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
local reply_length = REPLY_HEADER_FIELDS

local function encode()
  return struct.pack('<' .. string.rep('i8', reply_length), unpack(reply, 1, reply_length))
end
-- Without the config hash, look every list up; with it, only the lists ever used (the
-- admin commands set `lists:allow` / `lists:block` on first use and never clear them).
local use_allow, use_block = true, true
if has_config then
  local config = redis.call('HMGET', KEYS[n + stride * m + s + 1], 'version', 'lists:allow',
    'lists:block')
  reply[7] = tonumber(config[1] or '0')
  use_allow, use_block = config[2] == '1', config[3] == '1'
  if not lists_sent and (use_allow or use_block) then
    reply[8] = 1
    return encode()
  end
end
use_allow, use_block = use_allow and lists_sent, use_block and lists_sent

local function count_refusal(j)
  if j < 1 or alert_window <= 0 then
    return 0
  end
  local key = KEYS[n + stride * (j - 1) + 1]
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('PEXPIRE', key, expire_ms(alert_window))
  end
  return count
end

local function report(allowed, remaining, reset, wait)
  reply[reply_length + 1] = allowed and 1 or 0
  reply[reply_length + 2] = remaining
  reply[reply_length + 3] = reset
  reply[reply_length + 4] = wait
  reply_length = reply_length + 4
end

for j = 1, use_allow and m or 0 do
  if redis.call('EXISTS', KEYS[n + stride * (j - 1) + 2]) == 1 then
    reply[6] = 1
    return encode()
  end
end
for j = 1, use_block and m or 0 do
  local ttl = redis.call('PTTL', KEYS[n + stride * (j - 1) + 3])
  if ttl > 0 or ttl == -1 then
    reply[3] = j
    reply[4] = ttl == -1 and -1 or ttl * 1000
    reply[5] = count_refusal(j)
    return encode()
  end
end

local writes = {}
local rule = {}  -- one table for every check: the algorithms' writes never read it
for i = 1, n do
  local algorithm, cost, dry_run, subject
  algorithm, rule.count, rule.period, rule.capacity, rule.emission, rule.max_delay, cost,
    dry_run, subject, pos = struct.unpack(CHECK, batch, pos)
  local decide = algorithms[algorithm]
  if not decide then
    local load = LOADERS[algorithm]
    if not load then
      return redis.error_reply('flask-quota: unknown algorithm ' .. tostring(algorithm))
    end
    decide = load()
    algorithms[algorithm] = decide
  end
  local allowed, remaining, reset, wait, write = decide(KEYS[i], now_us, rule, cost)
  report(allowed, remaining, reset, wait)
  if allowed then
    if cost > 0 then
      writes[#writes + 1] = write
    end
  elseif dry_run ~= 1 then
    reply[1] = i
    reply[5] = count_refusal(subject)
    return encode()
  end
end

local slots = {}
for k = 1, s do
  local capacity, lease, subject
  capacity, lease, subject, pos = struct.unpack(SLOT, batch, pos)
  local allowed, remaining, reset, wait, write = concurrent(KEYS[n + stride * m + k], now_us,
    capacity, lease, ARGV[1 + k])
  if not allowed then
    report(allowed, remaining, reset, wait)
    reply[1] = n + k
    reply[5] = count_refusal(subject)
    return encode()
  end
  slots[#slots + 1] = write
end

for i = 1, #writes do
  writes[i]()
end
for k = 1, #slots do
  slots[k]()
end
return encode()

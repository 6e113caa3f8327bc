-- clock: the decision time, read once per call from the Redis server (TIME), so no app
-- server's clock can skew a decision. Defines `now_us` for the files assembled after it.
-- KEYS: none   ARGV: none   returns: nothing (a prelude)
local time_reply = redis.call('TIME')
local now_us = tonumber(time_reply[1]) * 1000000 + tonumber(time_reply[2])

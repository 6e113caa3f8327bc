-- test clock: replaces lua/clock.lua in the test suite only. The decision time is the last
-- ARGV element, popped here so the dispatcher sees its usual layout.
-- KEYS: none   ARGV[#ARGV]: now, integer microseconds   returns: nothing (a prelude)
local now_us = tonumber(table.remove(ARGV))

-- Shared by every presence script (prepended to each of them by RedisPresence): Redis's
-- own time, so that the nodes' clocks do not matter.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

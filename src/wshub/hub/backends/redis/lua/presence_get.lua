-- PresenceStore.get. KEYS[1] hash. Drops expired entries; returns the live ones as
-- {arrived, JSON, ...}.
local entries = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #entries, 2 do
  local expires, arrived, info = string.match(entries[i + 1], '^(%d+) (%d+) (.*)$')
  if expires and tonumber(expires) >= now_ms then
    live[#live + 1] = arrived
    live[#live + 1] = info
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
return live

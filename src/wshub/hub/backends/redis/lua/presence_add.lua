-- PresenceStore.add. KEYS[1] hash. ARGV: client, info JSON, ttl in ms. An entry keeps its
-- arrival time while it lives, so that rewriting it (heartbeat, replacement) keeps its
-- place in the order.
local arrived = t[1] .. string.format('%06d', tonumber(t[2]))
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local expires, since = string.match(old, '^(%d+) (%d+) ')
  if expires and tonumber(expires) >= now_ms then arrived = since end
end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], (now_ms + ttl) .. ' ' .. arrived .. ' ' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1

-- PresenceStore.remove. KEYS[1] hash. ARGV[1] client. Returns 1 when a live entry was
-- removed.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local expires = string.match(old, '^(%d+) ')
if expires and tonumber(expires) >= now_ms then return 1 end
return 0

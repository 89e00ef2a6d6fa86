-- HistoryStore.expire, for one channel: trims it by age and drops it when it is empty and
-- idle. Returns the number of visible publications dropped.
if not redis.call('HGET', meta, 'epoch') then
  redis.call('DEL', stream)
  redis.call('ZREM', index, channel)
  return 0
end
local top, size, ttl, time = state()
local dropped = trim_age(top, size, ttl)
local when, visible = next_sweep(top, size, ttl, time)
if not visible and when < now then
  redis.call('DEL', meta, stream)
  redis.call('ZREM', index, channel)
else
  redis.call('ZADD', index, when, channel)
end
return dropped

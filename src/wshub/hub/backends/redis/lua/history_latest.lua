-- HistoryStore.latest. ARGV[5] limit.
-- Returns {epoch, top, ttl, the newest visible entries, newest first}.
local epoch = open_stream()
local top, size = state()
local limit = tonumber(ARGV[5])
local entries = {}
if limit > 0 and size > 0 and top > 0 then
  local low = math.max(top - size + 1, 1) .. '-0'
  entries = redis.call('XREVRANGE', stream, '+', low, 'COUNT', limit)
end
return {epoch, top, redis.call('HGET', meta, 'ttl'), entries}

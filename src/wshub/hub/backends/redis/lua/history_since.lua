-- HistoryStore.since. ARGV[5] offset, ARGV[6] the client's epoch, ARGV[7] count.
-- Returns {epoch, top, ttl, entries after offset}; the entries are read only when they can
-- all still be there.
local epoch = open_stream()
local top, size = state()
local offset = tonumber(ARGV[5])
local entries = {}
if epoch == ARGV[6] and offset < top and offset + 1 >= top - size + 1 then
  entries = redis.call('XRANGE', stream, (offset + 1) .. '-0', '+', 'COUNT', ARGV[7])
end
return {epoch, top, redis.call('HGET', meta, 'ttl'), entries}

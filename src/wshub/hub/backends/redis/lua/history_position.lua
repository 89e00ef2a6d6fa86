-- HistoryStore.position. Returns {epoch, top}.
local epoch = open_stream()
return {epoch, tonumber(redis.call('HGET', meta, 'top'))}

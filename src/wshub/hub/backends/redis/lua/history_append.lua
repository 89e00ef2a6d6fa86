-- HistoryStore.append. KEYS[4] (optional): the dedupe key. ARGV[5] size, ARGV[6] ttl
-- ('' = none), ARGV[7] data, ARGV[8] info, ARGV[9] '1' when there is an info, ARGV[10] dedupe
-- window in seconds, ARGV[11] the same in milliseconds, ARGV[12] and ARGV[13] the epoch and
-- offset the node last acknowledged on this channel ('' and 0: none).
-- Returns {appended 1|0, offset, epoch, time}.
local size, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch = open_stream()
if ARGV[12] == epoch and tonumber(redis.call('HGET', meta, 'top')) < tonumber(ARGV[13]) then
  -- Redis lost publications the hub acknowledged (a failover to a replica that had not
  -- received them): a new epoch, so that their offsets are not given to others silently.
  -- What is left of the stream belongs to the lost epoch (subscribers already had it): the
  -- new epoch starts empty at offset 1, as after a restart without persistence, so that a
  -- client reading the new epoch from its start does not get those publications twice.
  epoch = ARGV[2]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
end
local dedupe = KEYS[4]
if dedupe then
  local seen = redis.call('GET', dedupe)
  if seen then
    local offset, seen_epoch, seen_time = string.match(seen, '^(%d+) (%S+) (%S+)$')
    if seen_epoch == epoch and tonumber(seen_time) >= now - tonumber(ARGV[10]) then
      return {0, tonumber(offset), epoch, seen_time}
    end
  end
end
local top = redis.call('HINCRBY', meta, 'top', 1)
local last = redis.call('HGET', meta, 'time')
if tonumber(last) > now then
  now_s, now = last, tonumber(last)
end
redis.call('HSET', meta, 'time', now_s, 'size', size, 'ttl', ARGV[6])
if size > 0 then
  if ARGV[9] == '1' then
    redis.call('XADD', stream, 'MAXLEN', '~', size, top .. '-0',
               't', now_s, 'd', ARGV[7], 'i', ARGV[8])
  else
    redis.call('XADD', stream, 'MAXLEN', '~', size, top .. '-0', 't', now_s, 'd', ARGV[7])
  end
else
  redis.call('DEL', stream)
end
trim_age(top, size, ttl)
if dedupe then
  redis.call('SET', dedupe, top .. ' ' .. epoch .. ' ' .. now_s, 'PX', ARGV[11])
end
redis.call('ZADD', index, next_sweep(top, size, ttl, now_s), channel)
return {1, top, epoch, now_s}

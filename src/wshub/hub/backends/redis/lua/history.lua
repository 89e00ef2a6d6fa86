-- Shared by every history script (prepended to each of them by RedisHistory).
-- KEYS: meta (hash), stream, index (sorted set of channels by next sweep time).
-- ARGV: channel, epoch candidate, now (seconds, the node's clock, as a string so that it
-- is stored exactly), idle_ttl.
local meta, stream, index = KEYS[1], KEYS[2], KEYS[3]
local channel, now_s, idle = ARGV[1], ARGV[3], tonumber(ARGV[4])
local now = tonumber(now_s)

local function open_stream()
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then return epoch end
  -- A new stream: a stream key left without its meta belongs to a lost epoch.
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', ARGV[2], 'top', 0, 'time', now_s, 'size', 0, 'ttl', '')
  redis.call('ZADD', index, now + idle, channel)
  return ARGV[2]
end

local function state()
  local v = redis.call('HMGET', meta, 'top', 'size', 'ttl', 'time')
  return tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), v[4]
end

local function offset_of(id)
  return tonumber(string.match(id, '^(%d+)'))
end

-- Drop the publications older than ttl from the front of the stream; returns how many of
-- them were visible (within the last `size`).
local function trim_age(top, size, ttl)
  if not ttl then return 0 end
  local cutoff = now - ttl
  local first_visible = top - size + 1
  local dropped = 0
  while true do
    local entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
    for i, entry in ipairs(entries) do
      if tonumber(entry[2][2]) >= cutoff then
        if i > 1 then redis.call('XTRIM', stream, 'MINID', entry[1]) end
        return dropped
      end
      if offset_of(entry[1]) >= first_visible then dropped = dropped + 1 end
    end
    if #entries == 0 then return dropped end
    redis.call('XTRIM', stream, 'MINID', (offset_of(entries[#entries][1]) + 1) .. '-0')
  end
end

-- When expire() must next look at the stream: when its oldest visible publication gets
-- too old, or, with none left, when the idle stream may be dropped. Also says whether
-- any publication is visible.
local function next_sweep(top, size, ttl, time)
  if size > 0 and top > 0 then
    local low = math.max(top - size + 1, 1) .. '-0'
    local first = redis.call('XRANGE', stream, low, '+', 'COUNT', 1)
    if #first > 0 then
      if ttl then return tonumber(first[1][2][2]) + ttl, true end
      return '+inf', true
    end
  end
  return tonumber(time) + idle, false
end

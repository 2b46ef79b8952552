--[[ promote: move due delayed jobs into the stream. Safe when many promoters race:
ZREM decides who moves each id, so an id is added to the stream exactly once.
KEYS[1] delayed zset  KEYS[2] stream  KEYS[2+j] job hash of id j
ARGV[1] group  then ids (same order as the job keys)
Returns the number of jobs moved.
]]
--- @include "lib/time.lua"
local delayed, stream, group = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local now = now_ms()
local moved = 0
for j = 2, #ARGV do
  local id, key = ARGV[j], KEYS[1 + j]
  local score = redis.call('ZSCORE', delayed, id)
  if score and tonumber(score) <= now and redis.call('ZREM', delayed, id) == 1 then
    local rec = redis.call('HMGET', key, 'n', 'd', 'o', 'a')
    if rec[1] then
      local eid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
        'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
      redis.call('HSET', key, 's', 'waiting', 'x', eid)
      redis.call('HDEL', key, 'due')
      moved = moved + 1
    end
  end
end
return moved

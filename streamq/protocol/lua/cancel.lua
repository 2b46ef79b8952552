--[[ cancel: cancel a delayed or waiting job. A job a worker has fetched cannot be cancelled.
KEYS[1] job hash  KEYS[2] delayed zset  KEYS[3] stream  KEYS[4] events
KEYS[5] cancelled zset (retention index; the id may be enqueued again)
KEYS[6] held zset  KEYS[7] held data hash  KEYS[8] held keys zset  KEYS[9] flow hash
A held job (flow control) can be cancelled until a take admits it.
ARGV[1] group  ARGV[2] job id  ARGV[3] events maxlen
Returns {code, state}: CODE_OK 'cancelled'; CODE_MISSING; CODE_BAD_STATE with the state.
]]
--- @include "lib/time.lua"
--- @include "lib/codes.lua"
local job, delayed, stream, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, id = ARGV[1], ARGV[2]
local state = redis.call('HGET', job, 's')
if not state then return {CODE_MISSING, ''} end
if state == 'delayed' then
  redis.call('ZREM', delayed, id)
elseif state == 'waiting' then
  local eid = redis.call('HGET', job, 'x')
  if eid then
    local p = redis.call('XPENDING', stream, group, eid, eid, 1)
    if p[1] then return {CODE_BAD_STATE, 'active'} end
    redis.call('XDEL', stream, eid)
  end
elseif state == 'held' then
  local r = redis.call('HMGET', job, 'hm', 'k')
  if not r[1] or redis.call('ZREM', KEYS[6], r[1]) == 0 then return {CODE_BAD_STATE, 'active'} end
  redis.call('HDEL', KEYS[7], id)
  redis.call('HINCRBY', KEYS[9], 'lvl:' .. string.sub(r[1], #(r[2] or '') + 2, #(r[2] or '') + 2), -1)
  if tonumber(redis.call('ZINCRBY', KEYS[8], -1, r[2] or '')) <= 0 then redis.call('ZREM', KEYS[8], r[2] or '') end
else
  return {CODE_BAD_STATE, state}
end
local now = now_ms()
redis.call('HSET', job, 's', 'cancelled', 'f', now)
redis.call('ZADD', KEYS[5], now, id)
redis.call('HDEL', job, 'x', 'due', 'hm')
redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', id, 'cancelled')
return {CODE_OK, 'cancelled'}

--[[ move: change when a delayed job is due.
KEYS[1] job hash  KEYS[2] delayed zset  KEYS[3] stream
ARGV[1] group  ARGV[2] job id  ARGV[3] delay_ms  ARGV[4] at_ms (>= 0 wins over delay)
A due time not in the future makes the job ready at once.
Returns {code, state, due}: CODE_OK; CODE_MISSING; CODE_BAD_STATE with the state.
]]
--- @include "lib/time.lua"
--- @include "lib/codes.lua"
local job, delayed, stream, group, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local state = redis.call('HGET', job, 's')
if not state then return {CODE_MISSING, '', 0} end
if state ~= 'delayed' or not redis.call('ZSCORE', delayed, id) then
  return {CODE_BAD_STATE, state, 0}
end
local now = now_ms()
local due = now + tonumber(ARGV[3])
if tonumber(ARGV[4]) >= 0 then due = tonumber(ARGV[4]) end
if due > now then
  redis.call('ZADD', delayed, 'XX', due, id)
  redis.call('HSET', job, 'due', due)
  return {CODE_OK, 'delayed', due}
end
redis.call('ZREM', delayed, id)
local rec = redis.call('HMGET', job, 'n', 'd', 'o', 'a')
local eid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
  'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
redis.call('HSET', job, 's', 'waiting', 'x', eid)
redis.call('HDEL', job, 'due')
return {CODE_OK, 'waiting', now}

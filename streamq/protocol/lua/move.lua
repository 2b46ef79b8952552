--[[ move: change when a delayed (or held) job is due.
KEYS[1] job hash  KEYS[2] delayed zset  KEYS[3] stream  KEYS[4..12] QueueKeys.flow_keys()
ARGV[1] group  ARGV[2] job id  ARGV[3] delay_ms  ARGV[4] at_ms (>= 0 wins over delay)
A due time not in the future makes the job ready at once (a flow job: held for its turn).
A held job moved to a future time leaves the held set until then.
Returns {code, state, due}: CODE_OK; CODE_MISSING; CODE_BAD_STATE with the state.
]]
--- @include "lib/time.lua"
--- @include "lib/codes.lua"
--- @include "lib/flow.lua"
local job, delayed, stream, group, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local F = flow_keys(4)
local state = redis.call('HGET', job, 's')
if not state then return {CODE_MISSING, '', 0} end
local now = now_ms()
local due = now + tonumber(ARGV[3])
if tonumber(ARGV[4]) >= 0 then due = tonumber(ARGV[4]) end
if state == 'held' then
  local r = redis.call('HMGET', job, 'hm', 'k')
  if not r[1] or not redis.call('ZSCORE', F.held, r[1]) then
    return {CODE_BAD_STATE, 'active', 0}
  end
  if due <= now then return {CODE_OK, 'held', now} end
  redis.call('ZREM', F.held, r[1])
  redis.call('HDEL', F.data, id)
  redis.call('HINCRBY', F.flow, 'lvl:' .. member_level(r[2] or '', r[1]), -1)
  if tonumber(redis.call('ZINCRBY', F.hkeys, -1, r[2] or '')) <= 0 then redis.call('ZREM', F.hkeys, r[2] or '') end
  redis.call('ZADD', delayed, due, id)
  redis.call('HSET', job, 's', 'delayed', 'due', due)
  return {CODE_OK, 'delayed', due}
end
if state ~= 'delayed' or not redis.call('ZSCORE', delayed, id) then
  return {CODE_BAD_STATE, state, 0}
end
if due > now then
  redis.call('ZADD', delayed, 'XX', due, id)
  redis.call('HSET', job, 'due', due)
  return {CODE_OK, 'delayed', due}
end
redis.call('ZREM', delayed, id)
if redis.call('HEXISTS', job, 'k') == 1 then
  rehold(F, job, id)
  return {CODE_OK, 'held', now}
end
local rec = redis.call('HMGET', job, 'n', 'd', 'o', 'a')
local eid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
  'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
redis.call('HSET', job, 's', 'waiting', 'x', eid)
redis.call('HDEL', job, 'due')
return {CODE_OK, 'waiting', now}

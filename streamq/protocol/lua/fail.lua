--[[ fail: an attempt failed; schedule a retry or move the job to the dead-letter stream.
KEYS[1] stream  KEYS[2] delayed zset  KEYS[3] dead stream  KEYS[4] failed zset
KEYS[5] events  KEYS[6] stats hash   KEYS[7] job hash  KEYS[8] throughput hash
ARGV[1] group  ARGV[2] consumer  ARGV[3] events maxlen  ARGV[4] job id  ARGV[5] entry id
ARGV[6] attempt  ARGV[7] error  ARGV[8] traceback  ARGV[9] retry delay ms (< 0: dead)
ARGV[10] reason (dead: 'failed', 'stalled', 'no-handler', 'undecodable', 'timeout', ...)
ARGV[11] started_ms  ARGV[12] '1' to skip the ownership check (entries claimed by this call's
  caller in the same breath, or entries already gone)
KEYS[9..17] QueueKeys.flow_keys() on the flow lane (KEYS[1] is then kstream): the job frees
  its key's concurrency slot; a retry is held again once due (promote.lua).
Returns {code, state, due}: CODE_OK with 'delayed' (retry) or 'failed' (dead); CODE_FENCED.
]]
--- @include "lib/time.lua"
--- @include "lib/owner.lua"
--- @include "lib/codes.lua"
--- @include "lib/metrics.lua"
--- @include "lib/flow.lua"
local stream, delayed, dead, failed, events, stats, job =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local group, consumer, id, eid = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
if ARGV[12] ~= '1' and not owns(stream, group, eid, consumer) then
  return {CODE_FENCED, '', 0}
end
if eid ~= '' then
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
end
if #KEYS > 8 and (eid ~= '' or ARGV[12] == '1') then
  release_slot(flow_keys(9), redis.call('HGET', job, 'k') or '')
end
local now = now_ms()
local delay = tonumber(ARGV[9])
redis.call('HINCRBY', stats, 'failed', 1)
redis.call('HINCRBY', KEYS[8], minute_of(now) .. ':f', 1)
redis.call('HSET', job, 'a', ARGV[6], 'e', ARGV[7], 'tb', ARGV[8], 'st', ARGV[11], 'w', consumer)
redis.call('HDEL', job, 'x')
if delay >= 0 then
  local due = now + delay
  redis.call('HSET', job, 's', 'delayed', 'due', due)
  redis.call('ZADD', delayed, due, id)
  redis.call('HINCRBY', stats, 'retried', 1)
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', id, 'retrying')
  return {CODE_OK, 'delayed', due}
end
redis.call('HSET', job, 's', 'failed', 'f', now, 'rs', ARGV[10])
redis.call('ZADD', failed, now, id)
local rec = redis.call('HMGET', job, 'n', 'd', 'o', 'k', 'p')
if rec[4] then
  -- A flow job keeps its key and priority through the DLQ (a replay holds it again).
  redis.call('XADD', dead, '*', 'i', id, 'n', rec[1] or '', 'd', rec[2] or 'null',
    'o', rec[3] or '', 'a', ARGV[6], 'e', ARGV[7], 'tb', ARGV[8], 'rs', ARGV[10], 'f', now,
    'k', rec[4], 'p', rec[5] or '0')
else
  redis.call('XADD', dead, '*', 'i', id, 'n', rec[1] or '', 'd', rec[2] or 'null',
    'o', rec[3] or '', 'a', ARGV[6], 'e', ARGV[7], 'tb', ARGV[8], 'rs', ARGV[10], 'f', now)
end
redis.call('HINCRBY', stats, 'dead', 1)
redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', id, 'failed')
return {CODE_OK, 'failed', now}

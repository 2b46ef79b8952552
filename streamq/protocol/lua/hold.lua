--[[ hold: a handler raised RateLimited: the job waits `retry_after` without using an
attempt (the record's attempt count is left as it was before this run).
KEYS[1] stream (the entry's lane)  KEYS[2] delayed zset  KEYS[3] job hash  KEYS[4] stats
KEYS[5..13] QueueKeys.flow_keys()
ARGV[1] group  ARGV[2] consumer  ARGV[3] job id  ARGV[4] entry id  ARGV[5] retry after ms
ARGV[6] '1': key-wide (every job of the job's key waits; a flow job only)
Returns {code, state, due}: CODE_OK with 'held' (key-wide: the job keeps its place, first
of its key) or 'delayed'; CODE_FENCED when this consumer no longer owns the entry.
]]
--- @include "lib/time.lua"
--- @include "lib/owner.lua"
--- @include "lib/codes.lua"
--- @include "lib/flow.lua"
local stream, delayed, job, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, id, eid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not owns(stream, group, eid, consumer) then return {CODE_FENCED, '', 0} end
redis.call('XACK', stream, group, eid)
redis.call('XDEL', stream, eid)
local F = flow_keys(5)
local now = now_ms()
local due = now + tonumber(ARGV[5])
redis.call('HINCRBY', stats, 'rate_limited', 1)
local flow = stream == F.kstream
if flow then
  local key = redis.call('HGET', job, 'k') or ''
  release_slot(F, key)
  if ARGV[6] == '1' and key ~= '' then
    redis.call('ZADD', F.blocked, 'GT', due, key)
    redis.call('ZREM', F.ring, key)
    rehold(F, job, id)
    return {CODE_OK, 'held', due}
  end
end
redis.call('ZADD', delayed, due, id)
redis.call('HSET', job, 's', 'delayed', 'due', due)
redis.call('HDEL', job, 'x')
return {CODE_OK, 'delayed', due}

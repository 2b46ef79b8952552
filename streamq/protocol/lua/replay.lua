--[[ replay: move one dead-letter entry back to the queue with a fresh attempt budget.
KEYS[1] dead stream  KEYS[2] stream  KEYS[3] failed zset  KEYS[4] job hash
KEYS[5..13] QueueKeys.flow_keys(): a flow job (its entry keeps `k`, `p`) is held again
ARGV[1] group  ARGV[2] dead entry id  ARGV[3] expected job id
Returns {code, new entry id}: CODE_OK; CODE_MISSING when the dead entry is gone (replayed
or purged by someone else).
]]
--- @include "lib/time.lua"
--- @include "lib/codes.lua"
--- @include "lib/flow.lua"
local dead, stream, failed, job = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, did, id = ARGV[1], ARGV[2], ARGV[3]
local r = redis.call('XRANGE', dead, did, did)
if not r[1] then return {CODE_MISSING, ''} end
local f = {}
local fields = r[1][2]
for k = 1, #fields, 2 do f[fields[k]] = fields[k + 1] end
if f['i'] ~= id then return {CODE_MISSING, ''} end
if f['k'] then
  local F = flow_keys(5)
  redis.call('HSET', job, 'n', f['n'], 'd', f['d'], 'o', f['o'], 'a', 0, 'c', now_ms())
  redis.call('HDEL', job, 'f', 'rs', 'due', 'hm', 'x', 'stl')
  hold_job(F, job, id, f['k'], tonumber(f['p'] or '0'), nil, f['n'], f['d'], f['o'], 0)
  redis.call('ZREM', failed, id)
  redis.call('XDEL', dead, did)
  return {CODE_OK, ''}
end
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local eid = redis.call('XADD', stream, '*', 'i', id, 'n', f['n'], 'd', f['d'], 'a', 1,
  'o', f['o'])
-- The record may have been trimmed by retention: rebuild it from the dead entry.
redis.call('HSET', job, 'n', f['n'], 'd', f['d'], 'o', f['o'], 's', 'waiting', 'a', 0,
  'x', eid, 'c', now_ms())
redis.call('HDEL', job, 'f', 'rs', 'due')
redis.call('ZREM', failed, id)
redis.call('XDEL', dead, did)
return {CODE_OK, eid}

--[[ sched_fire: enqueue one tick of a repeating schedule, exactly once.
Compare-and-set on the tick: only the caller that read this exact tick moves the schedule
on, and the job id is derived from the tick, so racing schedulers cannot enqueue it twice.
KEYS[1] repeat zset  KEYS[2] stream  KEYS[3] job hash of the tick's job
ARGV[1] group  ARGV[2] schedule key  ARGV[3] tick ms (as read)  ARGV[4] next tick ms
ARGV[5] job id  ARGV[6] name  ARGV[7] data  ARGV[8] opts
ARGV[9] job key ('' = none)  ARGV[10] priority: a flow job (either set) is held for a take;
  KEYS[4..12] are then QueueKeys.flow_keys()
Returns 1 when this call fired the tick, 0 when someone else did (or it was removed).
]]
--- @include "lib/time.lua"
--- @include "lib/flow.lua"
local cur = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not cur or tonumber(cur) ~= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local jkey, prio = ARGV[9] or '', tonumber(ARGV[10] or '0')
if jkey ~= '' or prio > 0 then
  local F = flow_keys(4)
  redis.call('HSET', KEYS[3], 'n', ARGV[6], 'd', ARGV[7], 'o', ARGV[8], 'a', 0,
    'c', now_ms(), 'rk', ARGV[2])
  hold_job(F, KEYS[3], ARGV[5], jkey, prio, nil, ARGV[6], ARGV[7], ARGV[8], 0)
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[1], '0', 'MKSTREAM')
end
local eid = redis.call('XADD', KEYS[2], '*', 'i', ARGV[5], 'n', ARGV[6], 'd', ARGV[7], 'a', 1,
  'o', ARGV[8])
redis.call('HSET', KEYS[3], 'n', ARGV[6], 'd', ARGV[7], 'o', ARGV[8], 's', 'waiting', 'a', 0,
  'c', now_ms(), 'x', eid, 'rk', ARGV[2])
return 1

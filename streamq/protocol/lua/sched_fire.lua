--[[ sched_fire: enqueue one tick of a repeating schedule, exactly once.
Compare-and-set on the tick: only the caller that read this exact tick moves the schedule
on, and the job id is derived from the tick, so racing schedulers cannot enqueue it twice.
KEYS[1] repeat zset  KEYS[2] stream  KEYS[3] job hash of the tick's job
ARGV[1] group  ARGV[2] schedule key  ARGV[3] tick ms (as read)  ARGV[4] next tick ms
ARGV[5] job id  ARGV[6] name  ARGV[7] data  ARGV[8] opts
Returns 1 when this call fired the tick, 0 when someone else did (or it was removed).
]]
--- @include "lib/time.lua"
local cur = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not cur or tonumber(cur) ~= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[1], '0', 'MKSTREAM')
end
local eid = redis.call('XADD', KEYS[2], '*', 'i', ARGV[5], 'n', ARGV[6], 'd', ARGV[7], 'a', 1,
  'o', ARGV[8])
redis.call('HSET', KEYS[3], 'n', ARGV[6], 'd', ARGV[7], 'o', ARGV[8], 's', 'waiting', 'a', 0,
  'c', now_ms(), 'x', eid, 'rk', ARGV[2])
return 1

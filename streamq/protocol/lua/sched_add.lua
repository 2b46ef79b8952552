--[[ sched_add: create or update a repeating schedule.
An identical definition keeps its next tick (so calling add at every start is harmless);
a changed one takes the new first tick. The same schedule as stored by an earlier version
(ARGV[4], its legacy form) also keeps its tick; its definition is rewritten in the new form.
KEYS[1] repeat zset  KEYS[2] repeat definitions hash
ARGV[1] key  ARGV[2] definition JSON  ARGV[3] first tick ms  ARGV[4] legacy form or ''
Returns {1 created or changed / 0 unchanged, next tick ms}
]]
local old = redis.call('HGET', KEYS[2], ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and old == ARGV[2] then return {0, tonumber(score)} end
if score and ARGV[4] ~= '' and old == ARGV[4] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return {0, tonumber(score)}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return {1, tonumber(ARGV[3])}

--[[ sched_remove: delete a repeating schedule (jobs already enqueued are not touched).
KEYS[1] repeat zset  KEYS[2] repeat definitions hash
ARGV[1] key
Returns 1 when it existed, else 0.
]]
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n

--[[ partitions: raise a queue's partition count, keeping every count it had.
KEYS[1] meta hash (home partition)
ARGV[1] the new count
Returns {CODE_OK, count, history} or {CODE_BAD_STATE, current count} when it would shrink.
]]
--- @include "lib/codes.lua"
local n = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'partitions') or '1')
if n < cur then return {CODE_BAD_STATE, cur} end
local history = redis.call('HGET', KEYS[1], 'history') or '1'
if n ~= cur then history = history .. ',' .. n end
redis.call('HSET', KEYS[1], 'partitions', n, 'history', history)
return {CODE_OK, n, history}

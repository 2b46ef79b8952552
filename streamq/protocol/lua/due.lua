--[[ due: which delayed jobs are due now (Redis clock), and when the next one is.
KEYS[1] delayed zset
ARGV[1] limit
Returns {now_ms, next_due_ms or -1, {ids...}}
]]
--- @include "lib/time.lua"
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local nxt = -1
if #ids == 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if head[2] then nxt = tonumber(head[2]) end
end
return {now, nxt, ids}

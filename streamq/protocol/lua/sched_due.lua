--[[ sched_due: repeating schedules whose tick is due by the Redis clock.
KEYS[1] repeat zset (schedule key -> next tick ms)  KEYS[2] repeat definitions hash
ARGV[1] limit
Returns {now_ms, next tick ms or -1, {key, tick ms, definition JSON, ...}}
]]
--- @include "lib/time.lua"
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[1]))
local out = {}
for k = 1, #due, 2 do
  out[#out + 1] = due[k]
  out[#out + 1] = due[k + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], due[k]) or ''
end
local nxt = -1
if #due == 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if head[2] then nxt = tonumber(head[2]) end
end
return {now, nxt, out}

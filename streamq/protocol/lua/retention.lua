--[[ retention: which finished ids exceed the keep-count or max age (Redis clock).
KEYS[1] index zset
ARGV[1] keep count (< 0: unlimited)  ARGV[2] max age ms (<= 0: unlimited)  ARGV[3] limit
Returns ids, oldest first, at most `limit`.
]]
--- @include "lib/time.lua"
local keep, age, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local over = 0
if keep >= 0 then
  over = redis.call('ZCARD', KEYS[1]) - keep
end
if age > 0 then
  local old = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. (now_ms() - age))
  if old > over then over = old end
end
if over <= 0 then return {} end
if over > limit then over = limit end
return redis.call('ZRANGE', KEYS[1], 0, over - 1)

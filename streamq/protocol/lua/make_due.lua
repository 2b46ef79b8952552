--[[ make_due: make delayed jobs (delays, and retries waiting out their backoff) due now.
For tests (streamq.testing): promotion is left to promote.lua, so a job made due takes the
production path into the stream.
KEYS[1] delayed zset  KEYS[1+j] job hash of ARGV[j]
ARGV: job ids (same order as the job keys)
An id no longer delayed (promoted or cancelled meanwhile) is skipped, one already due keeps
its due time, and a job hash that does not exist is not created.
Returns the number of jobs whose due time moved to now (Redis clock).
]]
--- @include "lib/time.lua"
local delayed = KEYS[1]
local now = now_ms()
local moved = 0
for j = 1, #ARGV do
  local score = redis.call('ZSCORE', delayed, ARGV[j])
  if score and tonumber(score) > now then
    redis.call('ZADD', delayed, 'XX', now, ARGV[j])
    if redis.call('EXISTS', KEYS[1 + j]) == 1 then
      redis.call('HSET', KEYS[1 + j], 'due', now)
    end
    moved = moved + 1
  end
end
return moved

--[[ complete: record N finished jobs, fenced by entry id + owner.
KEYS[1] stream  KEYS[2] completed zset  KEYS[3] events stream  KEYS[4] stats hash
KEYS[5] throughput hash  KEYS[6] histograms hash  KEYS[6+j] job hash of job j
ARGV[1] group  ARGV[2] consumer  ARGV[3] events maxlen  ARGV[4] N
  then 6 per job: job id, entry id, attempt, result (JSON), started_ms, duration ms
Returns a list of N codes: CODE_OK, or CODE_FENCED when this consumer no longer owns the entry.
]]
--- @include "lib/time.lua"
--- @include "lib/owner.lua"
--- @include "lib/codes.lua"
--- @include "lib/metrics.lua"
local stream, completed, events, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer = ARGV[1], ARGV[2]
local now = now_ms()
local out, ev, done, hist, dsum = {}, {}, 0, {}, 0
for j = 1, tonumber(ARGV[4]) do
  local b = 5 + (j - 1) * 6
  local id, eid = ARGV[b], ARGV[b + 1]
  if owns(stream, group, eid, consumer) then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    redis.call('HSET', KEYS[6 + j], 's', 'completed', 'a', ARGV[b + 2], 'r', ARGV[b + 3],
      'st', ARGV[b + 4], 'f', now, 'w', consumer)
    redis.call('HDEL', KEYS[6 + j], 'x')
    redis.call('ZADD', completed, now, id)
    ev[#ev + 1] = id; ev[#ev + 1] = 'completed'
    done = done + 1
    local dur = tonumber(ARGV[b + 5]) or 0
    local label = 'dur:' .. bucket_of(dur)
    hist[label] = (hist[label] or 0) + 1
    dsum = dsum + dur
    out[j] = CODE_OK
  else
    out[j] = CODE_FENCED
  end
end
if done > 0 then
  -- One event entry per batch (field = job id): cheap for the server, enough for waiters.
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', unpack(ev))
  redis.call('HINCRBY', stats, 'completed', done)
  redis.call('HINCRBY', KEYS[5], minute_of(now), done)
  for label, n in pairs(hist) do redis.call('HINCRBY', KEYS[6], label, n) end
  redis.call('HINCRBY', KEYS[6], 'dur:count', done)
  redis.call('HINCRBYFLOAT', KEYS[6], 'dur:sum', dsum)
end
return out

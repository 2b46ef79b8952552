--[[ release: hand running jobs back to the queue at once (graceful shutdown past the grace),
so another worker starts them without waiting for the lease. The attempt is not counted.
KEYS[1] stream  KEYS[1+j] job hash of job j
ARGV[1] group  ARGV[2] consumer  then 2 per job: job id, entry id
Returns the number of jobs handed back.
]]
--- @include "lib/owner.lua"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local n = 0
for j = 1, (#ARGV - 2) / 2 do
  local id, eid, key = ARGV[1 + 2 * j], ARGV[2 + 2 * j], KEYS[1 + j]
  if owns(stream, group, eid, consumer) then
    local rec = redis.call('HMGET', key, 'n', 'd', 'o', 'a')
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    if rec[1] then
      local neid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
        'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
      redis.call('HSET', key, 's', 'waiting', 'x', neid)
      n = n + 1
    end
  end
end
return n

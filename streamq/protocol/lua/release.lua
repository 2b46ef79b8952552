--[[ release: hand running jobs back to the queue at once (graceful shutdown past the grace,
or a flow job reclaimed from a dead worker), so another worker starts them without waiting
for the lease. The attempt is not counted.
KEYS[1] stream  KEYS[2..10] QueueKeys.flow_keys() (on the flow lane; else absent)
KEYS[(1 or 10)+j] job hash of job j
ARGV[1] group  ARGV[2] consumer  ARGV[3] max stalls (>= 0: count a stall per job, and
  leave a job past it in the PEL for the caller to dead-letter; -1: a hand-back)
  then 2 per job: job id, entry id
On the flow lane a job is held again at its old place, and frees its concurrency slot.
Returns {number handed back, {ids of jobs past max stalls}}.
]]
--- @include "lib/owner.lua"
--- @include "lib/flow.lua"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local max_stalls = tonumber(ARGV[3])
local njobs = (#ARGV - 3) / 2
local off, F = 1, nil
if #KEYS > 1 + njobs then
  F = flow_keys(2)
  off = 10
end
local n, over = 0, {}
for j = 1, njobs do
  local id, eid, key = ARGV[2 + 2 * j], ARGV[3 + 2 * j], KEYS[off + j]
  if owns(stream, group, eid, consumer) then
    local stalled = false
    if max_stalls >= 0 and redis.call('HINCRBY', key, 'stl', 1) > max_stalls then
      stalled = true
      over[#over + 1] = id
    end
    if not stalled then
      redis.call('XACK', stream, group, eid)
      redis.call('XDEL', stream, eid)
      if F then
        release_slot(F, redis.call('HGET', key, 'k') or '')
        if rehold(F, key, id) then n = n + 1 end
      else
        local rec = redis.call('HMGET', key, 'n', 'd', 'o', 'a')
        if rec[1] then
          local neid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
            'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
          redis.call('HSET', key, 's', 'waiting', 'x', neid)
          n = n + 1
        end
      end
    end
  end
end
return {n, over}

--[[ reflow: after the limits of a queue changed, give every key that waits on a limit a
new chance: each member of `full` (waiting for a concurrency slot) and of `blocked`
(waiting for a rate window) goes back on the ring, where the next take re-checks it
against the limits as they are now; a key whose limit still holds is parked again there.
A key with no held job is left where it is: there is nothing to run, and a key-wide hold
on it must still cover the jobs that come later. A key-wide RateLimited hold on a key that
has held jobs cannot be told from a rate window (both are a `blocked` score), so it is
lifted too: at worst one job of that key asks the platform early and is held again.
Workers blocked on their read are woken (one wake-up entry in kstream, as hold_job does).
KEYS[1..9] QueueKeys.flow_keys() (held, held:data, ring, blocked, full, inflight,
held:keys, flow, kstream)
Returns {keys moved from full, keys moved from blocked, keys left alone (no held job)}.
]]
--- @include "lib/flow.lua"
local F = flow_keys(1)

local from_full, from_blocked, left = 0, 0, 0
for _, key in ipairs(redis.call('SMEMBERS', F.full)) do
  if key_head(F, key) then
    redis.call('SREM', F.full, key)
    ring_key(F, key)
    from_full = from_full + 1
  else
    left = left + 1
  end
end
for _, key in ipairs(redis.call('ZRANGE', F.blocked, 0, -1)) do
  if key_head(F, key) then
    redis.call('ZREM', F.blocked, key)
    ring_key(F, key)
    from_blocked = from_blocked + 1
  else
    left = left + 1
  end
end
if from_full + from_blocked > 0 and redis.call('EXISTS', F.kstream) == 1 then
  if redis.call('HSETNX', F.flow, 'wake', 1) == 1 then
    redis.call('XADD', F.kstream, '*', 'w', '1')
  end
end
return {from_full, from_blocked, left}

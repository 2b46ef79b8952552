--[[ enqueue_flow: enqueue.lua for a batch holding flow jobs (a key or a priority): those
are held for a take (lib/flow.lua); the batch's plain jobs go to the stream as enqueue.lua
puts them. Same rules for existing and cancelled ids.
KEYS[1] stream   KEYS[2] delayed zset   KEYS[3] cancelled zset
KEYS[4..12] QueueKeys.flow_keys()       KEYS[12+j] job hash of job j (j = 1..N)
ARGV[1] group    ARGV[2] N    ARGV[3] '1' when every id was generated (see enqueue.lua)
  then 8 per job: id, name, data, opts, delay_ms, at_ms, key ('' = none), priority
Returns one item per job: as enqueue.lua, plus {'held', 1} for a new held job.
]]
--- @include "lib/time.lua"
--- @include "lib/enqueue.lua"
--- @include "lib/flow.lua"
local stream, delayed, group, fresh = KEYS[1], KEYS[2], ARGV[1], ARGV[3] == '1'
local F = flow_keys(4)
local now = nil
local function clock()
  if not now then now = now_ms() end
  return now
end
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
if redis.call('EXISTS', F.kstream) == 0 then
  redis.call('XGROUP', 'CREATE', F.kstream, group, '0', 'MKSTREAM')
end
local out = {}
for j = 1, tonumber(ARGV[2]) do
  local b = 4 + (j - 1) * 8
  local job = KEYS[12 + j]
  local id, name, data, opts = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local delay, at = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local key, prio = ARGV[b + 6], tonumber(ARGV[b + 7])
  local flow = key ~= '' or prio > 0
  local state = existing_state(job, id, KEYS[3], fresh)
  if state then
    out[j] = {state}
  else
    local due = due_of(at, delay, clock)
    if due >= 0 and due > clock() then
      redis.call('HSET', job, 'n', name, 'd', data, 'o', opts, 's', 'delayed', 'c', clock(),
        'due', due)
      if flow then redis.call('HSET', job, 'k', key, 'p', prio) end
      redis.call('ZADD', delayed, due, id)
      out[j] = due
    elseif flow then
      redis.call('HSET', job, 'n', name, 'd', data, 'o', opts, 'c', clock())
      hold_job(F, job, id, key, prio, nil, name, data, opts, 0)
      out[j] = {'held', 1}
    else
      local eid = redis.call('XADD', stream, '*', 'i', id, 'n', name, 'd', data, 'a', 1, 'o', opts)
      redis.call('HSET', job, 'n', name, 'd', data, 'o', opts, 's', 'waiting',
        'c', string.match(eid, '^%d+'), 'x', eid)
      out[j] = eid
    end
  end
end
return out

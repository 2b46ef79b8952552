--[[ complete: record N finished jobs, fenced by entry id + owner.
KEYS[1] stream  KEYS[2] completed zset  KEYS[3] events stream  KEYS[4] stats hash
KEYS[5] throughput hash  KEYS[6] histograms hash  KEYS[6+j] job hash of job j
ARGV[1] group  ARGV[2] consumer  ARGV[3] events maxlen  ARGV[4] N
  then 6 per job: job id, entry id, attempt, result (JSON), started_ms, duration ms
KEYS[7+N..15+N] QueueKeys.flow_keys() on the flow lane (KEYS[1] is then kstream): each
  completed job frees its key's concurrency slot.
Returns a list of N codes: CODE_OK; CODE_DONE when this consumer had already recorded it (a
retried call); CODE_FENCED when this consumer no longer owns the entry.
]]
--- @include "lib/time.lua"
--- @include "lib/owner.lua"
--- @include "lib/codes.lua"
--- @include "lib/metrics.lua"
--- @include "lib/chunks.lua"
--- @include "lib/flow.lua"
local stream, completed, events, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer = ARGV[1], ARGV[2]
local now = now_ms()
local out, ev, done, hist, dsum = {}, {}, 0, {}, 0
local owned, eids = {}, {}
for j = 1, tonumber(ARGV[4]) do eids[j] = ARGV[5 + (j - 1) * 6 + 1] end
local mine = owned_set(stream, group, eids, consumer)
for j = 1, tonumber(ARGV[4]) do
  local eid = eids[j]
  if mine[eid] then
    owned[#owned + 1] = eid
    out[j] = CODE_OK
  else
    -- A retry of a completion whose reply was lost (Redis restarted in between): the
    -- record already says this consumer completed it, so report success, write nothing.
    local rec = redis.call('HMGET', KEYS[6 + j], 's', 'w', 'a')
    if rec[1] == 'completed' and rec[2] == consumer and rec[3] == ARGV[5 + (j - 1) * 6 + 2] then
      out[j] = CODE_DONE
    else
      out[j] = CODE_FENCED
    end
  end
end
-- XACK + XDEL first, one per slice of the batch rather than one per job (the per-command
-- cost dominated the server's time per job). Order matters on a full Redis: these free
-- memory and are allowed under OOM, and once a script has written, Redis lets it finish,
-- so workers can still drain a full server.
for _, c in ipairs(chunks(owned, 1000)) do
  redis.call('XACK', stream, group, unpack(c))
  redis.call('XDEL', stream, unpack(c))
end
local njobs = tonumber(ARGV[4])
local F = nil
if #KEYS > 6 + njobs then F = flow_keys(7 + njobs) end
local scored = {}
for j = 1, njobs do
  if out[j] == CODE_OK then
    local b = 5 + (j - 1) * 6
    local id = ARGV[b]
    if F then release_slot(F, redis.call('HGET', KEYS[6 + j], 'k') or '') end
    scored[#scored + 1] = now; scored[#scored + 1] = id
    -- x = '' rather than HDEL: one command per job instead of two.
    redis.call('HSET', KEYS[6 + j], 's', 'completed', 'a', ARGV[b + 2], 'r', ARGV[b + 3],
      'st', ARGV[b + 4], 'f', now, 'w', consumer, 'x', '')
    ev[#ev + 1] = id; ev[#ev + 1] = 'completed'
    done = done + 1
    local dur = tonumber(ARGV[b + 5]) or 0
    local label = 'dur:' .. bucket_of(dur)
    hist[label] = (hist[label] or 0) + 1
    dsum = dsum + dur
  end
end
for _, c in ipairs(chunks(scored, 2000)) do redis.call('ZADD', completed, unpack(c)) end
if done > 0 then
  -- One event entry per slice (field = job id): cheap for the server, enough for waiters.
  for _, c in ipairs(chunks(ev, 2000)) do
    redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', unpack(c))
  end
  redis.call('HINCRBY', stats, 'completed', done)
  redis.call('HINCRBY', KEYS[5], minute_of(now), done)
  for label, n in pairs(hist) do redis.call('HINCRBY', KEYS[6], label, n) end
  redis.call('HINCRBY', KEYS[6], 'dur:count', done)
  redis.call('HINCRBYFLOAT', KEYS[6], 'dur:sum', dsum)
end
return out

--[[ enqueue: add N jobs in one call; a job id that already has a record is not re-added,
except a cancelled one: cancelling frees the id (a user cancels a post, then schedules it
again).
KEYS[1] stream   KEYS[2] delayed zset   KEYS[3] cancelled zset
KEYS[3+j] job hash of job j (j = 1..N)
ARGV[1] group    ARGV[2] N
  then 6 per job: id, name, data (JSON), opts ('' = library defaults), delay_ms, at_ms
  (at_ms >= 0: absolute due time in ms since the epoch; else delay_ms > 0: due = TIME + delay)
Returns a flat list, 3 per job: code (CODE_OK new / CODE_EXISTS), state, ref
  (ref: stream entry id when waiting, due ms when delayed, '' when it existed).
The record of a new job has no 'a' field: absent attempts read as 0 everywhere.
]]
--- @include "lib/time.lua"
--- @include "lib/codes.lua"
local stream, delayed, group = KEYS[1], KEYS[2], ARGV[1]
-- TIME and the stream check cost a command each; a call with no delayed job needs neither.
local now, ready = nil, false
local function clock()
  if not now then now = now_ms() end
  return now
end
local function ensure_stream()
  -- Group at id 0 so nothing added before a worker starts is skipped.
  if not ready and redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
  ready = true
end
local out = {}
for j = 1, tonumber(ARGV[2]) do
  local b = 3 + (j - 1) * 6
  local key = KEYS[3 + j]
  local id, name, data, opts = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local delay, at = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local state = redis.call('HGET', key, 's')
  if state == 'cancelled' then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[3], id)
    state = false
  end
  if state then
    out[#out + 1] = CODE_EXISTS; out[#out + 1] = state; out[#out + 1] = ''
  else
    local due = -1
    if at >= 0 then due = at elseif delay > 0 then due = clock() + delay end
    if due >= 0 and due > clock() then
      ensure_stream()
      redis.call('HSET', key, 'n', name, 'd', data, 'o', opts, 's', 'delayed', 'c', clock(),
        'due', due)
      redis.call('ZADD', delayed, due, id)
      out[#out + 1] = CODE_OK; out[#out + 1] = 'delayed'; out[#out + 1] = tostring(due)
    else
      -- NOMKSTREAM: nil (false in Lua) when the stream does not exist yet, which replaces
      -- an EXISTS per call; the first job of a queue creates stream and group, then retries.
      local eid = redis.call('XADD', stream, 'NOMKSTREAM', '*', 'i', id, 'n', name, 'd', data,
        'a', 1, 'o', opts)
      if not eid then
        ensure_stream()
        eid = redis.call('XADD', stream, '*', 'i', id, 'n', name, 'd', data, 'a', 1, 'o', opts)
      end
      ready = true
      -- Created = the ms part of the entry id: the server's clock, without a TIME call.
      redis.call('HSET', key, 'n', name, 'd', data, 'o', opts, 's', 'waiting',
        'c', string.match(eid, '^%d+'), 'x', eid)
      out[#out + 1] = CODE_OK; out[#out + 1] = 'waiting'; out[#out + 1] = eid
    end
  end
end
return out

--[[ promote: move due delayed jobs into the stream (a flow job: held for its turn). Safe
when many promoters race: ZREM decides who moves each id, so an id moves exactly once.
KEYS[1] delayed zset  KEYS[2] stream  KEYS[3] histograms hash  KEYS[4..12] flow keys
KEYS[11+j] job hash of ARGV[j]
ARGV[1] group  then ids (same order as the job keys)
Records each job's lateness (promotion time - due time, Redis clock) in the histograms.
Returns the number of jobs moved.
]]
--- @include "lib/time.lua"
--- @include "lib/metrics.lua"
--- @include "lib/flow.lua"
local delayed, stream, group = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local F = nil
local now = now_ms()
local moved, hist, lsum = 0, {}, 0
for j = 2, #ARGV do
  local id, key = ARGV[j], KEYS[11 + j]
  local score = redis.call('ZSCORE', delayed, id)
  if score and tonumber(score) <= now and redis.call('ZREM', delayed, id) == 1 then
    local rec = redis.call('HMGET', key, 'n', 'd', 'o', 'a', 'k')
    if rec[1] then
      if rec[5] then
        if not F then F = flow_keys(4) end
        rehold(F, key, id)
      else
        local eid = redis.call('XADD', stream, '*', 'i', id, 'n', rec[1], 'd', rec[2],
          'a', tonumber(rec[4] or '0') + 1, 'o', rec[3])
        redis.call('HSET', key, 's', 'waiting', 'x', eid)
        redis.call('HDEL', key, 'due')
      end
      moved = moved + 1
      local late = now - tonumber(score)
      local label = 'late:' .. bucket_of(late)
      hist[label] = (hist[label] or 0) + 1
      lsum = lsum + late
    end
  end
end
if moved > 0 then
  for label, n in pairs(hist) do redis.call('HINCRBY', KEYS[3], label, n) end
  redis.call('HINCRBY', KEYS[3], 'late:count', moved)
  redis.call('HINCRBYFLOAT', KEYS[3], 'late:sum', lsum)
end
return moved

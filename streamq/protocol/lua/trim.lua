--[[ trim: retention. Drop finished job records from a completed/failed index.
KEYS[1] index zset  KEYS[1+j] job hash of id j
ARGV: ids (same order as the job keys)
Only ids still in the index are removed, so racing trimmers never delete a record twice or
delete a job that was replayed in between.
Returns the number removed.
]]
--- @include "lib/chunks.lua"
-- One ZMSCORE, ZREM and DEL per slice instead of a ZREM and a DEL per id: the per-call
-- cost dominated the server's time for retention.
local n, offset = 0, 0
for _, c in ipairs(chunks(ARGV, 1000)) do
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(c))
  local ids, keys = {}, {}
  for i = 1, #c do
    if scores[i] then
      ids[#ids + 1] = c[i]
      keys[#keys + 1] = KEYS[1 + offset + i]
    end
  end
  if #ids > 0 then
    redis.call('ZREM', KEYS[1], unpack(ids))
    redis.call('DEL', unpack(keys))
    n = n + #ids
  end
  offset = offset + #c
end
return n

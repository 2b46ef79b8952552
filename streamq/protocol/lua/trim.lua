--[[ trim: retention. Drop finished job records from a completed/failed index.
KEYS[1] index zset  KEYS[1+j] job hash of id j
ARGV: ids (same order as the job keys)
Only ids still in the index are removed, so racing trimmers never delete a record twice or
delete a job that was replayed in between.
Returns the number removed.
]]
local n = 0
for j = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[j]) == 1 then
    redis.call('DEL', KEYS[1 + j])
    n = n + 1
  end
end
return n

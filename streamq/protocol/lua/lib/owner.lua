-- Fencing: is stream entry `eid` in the group's PEL and owned by `consumer`?
-- A worker whose lease was taken over (or whose entry was handed back) fails this check,
-- so its late completion cannot overwrite the new owner's record.
local function owns(stream, group, eid, consumer)
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  return p[1] ~= nil and p[1][2] == consumer
end

--[[ get_job: a job's record, plus its running state when a worker holds its entry.
KEYS[1] job hash  KEYS[2] stream
ARGV[1] group
Returns {flat HGETALL, {consumer, idle ms, deliveries} or {}}
]]
local rec = redis.call('HGETALL', KEYS[1])
local run = {}
if #rec > 0 then
  local eid = redis.call('HGET', KEYS[1], 'x')
  if eid then
    local ok, p = pcall(redis.call, 'XPENDING', KEYS[2], ARGV[1], eid, eid, 1)
    if ok and p[1] then run = {p[1][2], p[1][3], p[1][4]} end
  end
end
return {rec, run}

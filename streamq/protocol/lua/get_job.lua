--[[ get_job: a job's record, plus its running state when a worker holds its entry.
KEYS[1] job hash  KEYS[2] stream  KEYS[3] held zset
ARGV[1] group
Returns {flat HGETALL, {consumer, idle ms, deliveries} or {}, 1 when flow control has
admitted the held job (it runs) else 0}
]]
local rec = redis.call('HGETALL', KEYS[1])
local run = {}
local admitted = 0
if #rec > 0 then
  local f = redis.call('HMGET', KEYS[1], 'x', 's', 'hm')
  local eid = f[1]
  if eid then
    local ok, p = pcall(redis.call, 'XPENDING', KEYS[2], ARGV[1], eid, eid, 1)
    if ok and p[1] then run = {p[1][2], p[1][3], p[1][4]} end
  end
  if f[2] == 'held' and f[3] and not redis.call('ZSCORE', KEYS[3], f[3]) then admitted = 1 end
end
return {rec, run, admitted}

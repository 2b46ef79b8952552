--[[ reclaim: take over entries idle past the lease (a crashed or frozen worker's jobs).
KEYS[1] stream
ARGV[1] group  ARGV[2] consumer  ARGV[3] min idle ms  ARGV[4] start id  ARGV[5] count
Returns {next start id, {{entry id, {fields...}, deliveries}, ...}, {deleted entry ids}}
Deleted ids are entries that were removed from the stream while pending (Redis >= 7 only).
]]
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
  local deliveries = 0
  if p[1] then deliveries = p[1][4] end
  out[#out + 1] = {e[1], e[2], deliveries}
end
return {r[1], out, r[3] or {}}

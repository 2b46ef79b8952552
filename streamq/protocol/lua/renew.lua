--[[ renew: extend the lease of this consumer's running entries (re-claim to itself, JUSTID,
so the idle time restarts). Entries it no longer owns are not touched: a stalled worker
cannot steal back a job another worker now runs.
KEYS[1] stream
ARGV[1] group  ARGV[2] consumer  then entry ids
Returns the entry ids this consumer has lost: pending under another consumer. An entry no
longer pending at all was finished (by this consumer's completion racing the renewal, or
by whoever took it over, whose completion fences ours) and is not reported.
]]
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost = {}, {}
for j = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[j], ARGV[j], 1)
  if p[1] and p[1][2] == consumer then
    mine[#mine + 1] = ARGV[j]
  elseif p[1] then
    lost[#lost + 1] = ARGV[j]
  end
end
if #mine > 0 then
  redis.call('XCLAIM', stream, group, consumer, 0, unpack(mine), 'JUSTID')
end
return lost

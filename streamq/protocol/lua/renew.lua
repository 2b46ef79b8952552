--[[ renew: extend the lease of this consumer's running entries (re-claim to itself, JUSTID,
so the idle time restarts). Entries it no longer owns are not touched: a stalled worker
cannot steal back a job another worker now runs.
KEYS[1] stream
ARGV[1] group  ARGV[2] consumer  then entry ids
Returns the entry ids this consumer has lost.
]]
--- @include "lib/owner.lua"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost = {}, {}
for j = 3, #ARGV do
  if owns(stream, group, ARGV[j], consumer) then
    mine[#mine + 1] = ARGV[j]
  else
    lost[#lost + 1] = ARGV[j]
  end
end
if #mine > 0 then
  redis.call('XCLAIM', stream, group, consumer, 0, unpack(mine), 'JUSTID')
end
return lost

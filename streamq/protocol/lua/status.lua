--[[ status: counts of one queue.
KEYS[1] stream  KEYS[2] delayed  KEYS[3] completed  KEYS[4] failed  KEYS[5] dead
KEYS[6] stats hash
ARGV[1] group
Returns {waiting, active, completed, failed, delayed, dead, completed_total, failed_total,
retried_total, oldest waiting entry id or ''}
]]
local stream = KEYS[1]
local len = redis.call('XLEN', stream)
local active = 0
local ok, p = pcall(redis.call, 'XPENDING', stream, ARGV[1])
if ok then active = p[1] end
local oldest = ''
if len > active then
  -- The first entry after the group's last-delivered id is the oldest waiting one.
  local ok2, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if ok2 then
    for _, g in ipairs(groups) do
      local gi = {}
      for k = 1, #g, 2 do gi[g[k]] = g[k + 1] end
      if gi['name'] == ARGV[1] then
        local nxt = redis.call('XRANGE', stream, '(' .. gi['last-delivered-id'], '+', 'COUNT', 1)
        if nxt[1] then oldest = nxt[1][1] end
      end
    end
  end
end
local s = redis.call('HMGET', KEYS[6], 'completed', 'dead', 'retried')
return {len - active, active, redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
  redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[5]), tonumber(s[1]) or 0,
  tonumber(s[2]) or 0, tonumber(s[3]) or 0, oldest}

--[[ rlog_prune: drop starts that have left every window from the rate logs, a slice at a
time (a key that stops getting jobs is otherwise never charged again, so never pruned).
KEYS[1] rlog  KEYS[2] limits hash
ARGV[1] cursor ('' = from the start)  ARGV[2] members to look at
Returns {next cursor ('' = done), members removed}.
]]
--- @include "lib/time.lua"
local rlog = KEYS[1]
local now = now_ms()
local periods = {}
for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do
  local ok, r = pcall(cjson.decode, raw)
  if ok and type(r) == 'table' and type(r.pattern) == 'string' and type(r.period_ms) == 'number' then
    local b = 'e\0' .. r.pattern
    if r.shared then b = 's\0' .. r.pattern end
    if not periods[b] or r.period_ms > periods[b] then periods[b] = r.period_ms end
  end
end
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local members = redis.call('ZRANGEBYLEX', rlog, start, '+', 'LIMIT', 0, tonumber(ARGV[2]))
local removed = 0
for _, m in ipairs(members) do
  -- <s|e>\0<pattern>[\0<key>]\0<ms 15 digits>\0<id>
  local scope, pattern = string.match(m, '^([es])%z([^%z]*)%z')
  local ms = tonumber(string.match(m, '%z(%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d)%z[^%z]*$'))
  local period = scope and periods[scope .. '\0' .. pattern]
  if not ms or not period or ms <= now - period then
    redis.call('ZREM', rlog, m)
    removed = removed + 1
  end
end
local nxt = ''
if #members == tonumber(ARGV[2]) then nxt = members[#members] end
return {nxt, removed}

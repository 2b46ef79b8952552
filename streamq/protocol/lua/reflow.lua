--[[ reflow: after the limits of a queue changed, give every key that waits on a limit a
new chance: each member of `full` (waiting for a concurrency slot) and of `blocked`
(waiting for a rate window) goes back into the ring, where the next take re-checks it
against the limits as they are now. A key whose limit still holds is simply parked again.
KEYS[1] held zset (all scores 0, members <key>\0<9-priority>\0<seq>\0<id>)
KEYS[2] ring zset (key -> (9 - top level) * 2^40 + turn)
KEYS[3] blocked zset (key -> ms until which it waits)
KEYS[4] full set
KEYS[5] flow hash (field turn)
Returns {keys moved from full, keys moved from blocked, keys left alone (no held job)}.
A key with no held job is left where it is: there is nothing to run, and a hold on it
(RateLimited key_wide) must still cover the jobs that come later.
]]
local held, ring, blocked, full, flow = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local LEVEL = 1099511627776 -- 2^40: one priority level of the ring score

-- The ring score of a key from its first held member, or nil when it holds nothing.
local function score(key)
  local first = redis.call('ZRANGEBYLEX', held, '[' .. key .. '\0', '(' .. key .. '\1',
    'LIMIT', 0, 1)
  if not first[1] then return nil end
  -- The character after "<key>\0" is 9 - priority, i.e. 9 - top level.
  local inverse = tonumber(string.sub(first[1], #key + 2, #key + 2)) or 9
  return inverse * LEVEL + redis.call('HINCRBY', flow, 'turn', 1)
end

local function move(key)
  local s = score(key)
  if s == nil then return false end
  -- NX: a key already in the ring keeps its turn.
  redis.call('ZADD', ring, 'NX', s, key)
  return true
end

local from_full, from_blocked, left = 0, 0, 0
for _, key in ipairs(redis.call('SMEMBERS', full)) do
  if move(key) then
    redis.call('SREM', full, key)
    from_full = from_full + 1
  else
    left = left + 1
  end
end
for _, key in ipairs(redis.call('ZRANGE', blocked, 0, -1)) do
  if move(key) then
    redis.call('ZREM', blocked, key)
    from_blocked = from_blocked + 1
  else
    left = left + 1
  end
end
return {from_full, from_blocked, left}

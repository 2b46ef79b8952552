--[[ take: admit up to N held flow jobs for this consumer and deliver them to it, through
kstream, in one step: round-robin across keys (the ring), highest priority first (or
weighted by priority in "weighted" mode), each within its key's rate limits and concurrency.
A rate limit is charged here, when the job is handed to the worker that runs it at once.
KEYS[1..9] QueueKeys.flow_keys()  KEYS[10] rlog  KEYS[11] limits  KEYS[12] stats
ARGV[1] group  ARGV[2] consumer  ARGV[3] N  then wake-up entry ids this consumer read
Returns {entries (as XREADGROUP's), now ms, ms of the next rate window opening or -1,
  top priority still on the ring or -1}
]]
--- @include "lib/time.lua"
--- @include "lib/flow.lua"
local F = flow_keys(1)
local rlog, limits, stats = KEYS[10], KEYS[11], KEYS[12]
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', F.kstream) == 0 then
  redis.call('XGROUP', 'CREATE', F.kstream, group, '0', 'MKSTREAM')
end
-- Wake-up entries: the ones this consumer read, and any still undelivered (only takes add
-- jobs to kstream and deliver them at once, so an undelivered entry is a wake-up).
for j = 4, #ARGV do
  redis.call('XACK', F.kstream, group, ARGV[j])
  redis.call('XDEL', F.kstream, ARGV[j])
end
local stray = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 100,
  'STREAMS', F.kstream, '>')
if stray then
  for _, e in ipairs(stray[1][2]) do
    redis.call('XACK', F.kstream, group, e[1])
    redis.call('XDEL', F.kstream, e[1])
  end
end
-- No wake-up is undelivered now: the next hold, freed slot or busy take posts one.
redis.call('HDEL', F.flow, 'wake')
local now = now_ms()

-- Keys whose wait is over go back on the ring.
local due = redis.call('ZRANGEBYSCORE', F.blocked, '-inf', now, 'LIMIT', 0, 1000)
for _, key in ipairs(due) do
  redis.call('ZREM', F.blocked, key)
  ring_key(F, key)
end

-- The rules: glob patterns where only '*' is special.
local rules = {}
for i, raw in ipairs(redis.call('HVALS', limits)) do
  local ok, r = pcall(cjson.decode, raw)
  if ok and type(r) == 'table' and type(r.pattern) == 'string' then
    local lp = '^' .. string.gsub(r.pattern, '[%^%$%(%)%%%.%[%]%+%-%?]', '%%%0') .. '$'
    r.lua = string.gsub(lp, '%*', '.*')
    if r.rate == cjson.null then r.rate = nil end
    if r.period_ms == cjson.null then r.period_ms = nil end
    if r.concurrency == cjson.null then r.concurrency = nil end
    if r.shared then
      r.bucket = 's\0' .. r.pattern
      r.concurrency = nil
    else
      r.bucket = 'e\0' .. r.pattern .. '\0'
    end
    rules[#rules + 1] = r
  end
end
local cache = {}
local function rules_for(key)
  local found = cache[key]
  if found then return found end
  found = {}
  if key ~= '' then
    for _, r in ipairs(rules) do
      if string.find(key, r.lua) then
        found[#found + 1] = r
        if r.concurrency and (not found.k or r.concurrency < found.k) then found.k = r.concurrency end
      end
    end
  end
  cache[key] = found
  return found
end
local function bucket_name(r, key)
  if r.shared then return r.bucket end
  return r.bucket .. key
end
local function pad(ms) return string.format('%015d', ms) end

-- One admitted, unfinished job of `key` less (an undone reservation).
local function unreserve(key)
  if redis.call('HINCRBY', F.inflight, key, -1) <= 0 then redis.call('HDEL', F.inflight, key) end
end

-- 'ok', 'full' (a concurrency slot is missing) or the ms at which a window opens; and
-- whether the job's slot in `inflight` is reserved already. The slot is counted first and
-- given back when the job may not run: one call where the job runs, the usual case.
local function check(key)
  local rs = rules_for(key)
  if #rs == 0 then return 'ok', false end
  local reserved = false
  if rs.k then
    if redis.call('HINCRBY', F.inflight, key, 1) > rs.k then
      unreserve(key)
      return 'full', false
    end
    reserved = true
  end
  local opens = nil
  for _, r in ipairs(rs) do
    if r.rate and r.period_ms then
      local b = bucket_name(r, key)
      local lo, hi = '(' .. b .. '\0' .. pad(now - r.period_ms) .. '\1', '(' .. b .. '\1'
      local n = redis.call('ZLEXCOUNT', rlog, lo, hi)
      if n >= r.rate then
        -- The window opens when the oldest (n - rate + 1) starts in it have left it.
        local m = redis.call('ZRANGEBYLEX', rlog, lo, hi, 'LIMIT', n - r.rate, 1)[1]
        local t = tonumber(string.sub(m, #b + 2, #b + 16)) + r.period_ms
        if not opens or t > opens then opens = t end
      end
    end
  end
  if opens then
    if reserved then unreserve(key) end
    return opens, false
  end
  return 'ok', reserved
end
-- `now` is fixed for the whole script: a bucket's old starts are dropped once per take.
local trimmed = {}
local function charge(key, id)
  for _, r in ipairs(rules_for(key)) do
    if r.rate and r.period_ms then
      local b = bucket_name(r, key)
      if not trimmed[b] then
        trimmed[b] = true
        redis.call('ZREMRANGEBYLEX', rlog, '[' .. b .. '\0', '(' .. b .. '\0' .. pad(now - r.period_ms) .. '\1')
      end
      redis.call('ZADD', rlog, 0, b .. '\0' .. pad(now) .. '\0' .. id)
    end
  end
end

-- The next key and job: the lowest ring score (strict: highest priority, then the key
-- served longest ago), or in weighted mode first the level whose pass is lowest (stride
-- scheduling, weight = priority + 1), then the first key on the ring with a job there.
local weighted = redis.call('HGET', F.flow, 'mode') == 'weighted'
local passes, counts, vt = {}, {}, 0
if weighted then
  vt = tonumber(redis.call('HGET', F.flow, 'vt') or '0')
  for level = 0, 9 do
    passes[level] = tonumber(redis.call('HGET', F.flow, 'pass:' .. level) or '0')
    counts[level] = tonumber(redis.call('HGET', F.flow, 'lvl:' .. level) or '0')
  end
end
-- Strict mode reads the ring ahead (`ahead`: key, score, key, score...; `at`: the next
-- pair): a key this take puts back goes behind every key of its level, so the pairs still
-- to come stay the ring's first ones unless that key came back at a level ahead of the
-- last of them (checked where a key goes back on the ring, below).
local ahead, at = {}, 1
local function ring_first()
  if weighted then return redis.call('ZRANGE', F.ring, 0, 0)[1] end
  if at > #ahead then
    ahead, at = redis.call('ZRANGE', F.ring, 0, math.max(want, 1) - 1, 'WITHSCORES'), 1
  end
  local key = ahead[at]
  at = at + 2
  return key
end
-- The pick also reads the key's job after its head: where the key goes back on the ring
-- once its head is taken, without reading the held set again.
local function strict_pick()
  local key = ring_first()
  if not key then return nil, nil end
  local two = redis.call('ZRANGEBYLEX', F.held, '[' .. key .. '\0', '(' .. key .. '\1',
    'LIMIT', 0, 2)
  return key, two[1], two[2] or false
end
local function next_pick()
  if not weighted then return strict_pick() end
  local tried = {}
  while true do
    local best, best_pass = nil, nil
    for level = 0, 9 do
      if counts[level] > 0 and not tried[level] then
        local p = math.max(passes[level], vt)
        if not best_pass or p < best_pass then best, best_pass = level, p end
      end
    end
    if not best then return strict_pick() end
    tried[best] = true
    for _, key in ipairs(redis.call('ZRANGE', F.ring, 0, 99)) do
      local m = redis.call('ZRANGEBYLEX', F.held, '[' .. key .. '\0' .. best .. '\0',
        '(' .. key .. '\0' .. best .. '\1', 'LIMIT', 0, 1)[1]
      if m then
        vt = best_pass
        passes[best] = best_pass + 1 / (10 - best)
        return key, m, nil
      end
    end
  end
end

-- Counters this take moves for every job it admits, kept here and written once at the end
-- (the script is atomic: nothing else reads them meanwhile): the ring's turn and the held
-- jobs per level.
local turn = nil
local function next_turn()
  if not turn then turn = tonumber(redis.call('HGET', F.flow, 'turn') or '0') end
  turn = turn + 1
  return turn
end
local lvl_taken = {}
local dropped = {} -- ids whose held data is read: deleted at the end, in one HDEL a slice

local taken, waited, looked = 0, 0, 0
while taken < want and looked < want + 1000 do
  local key, head, after = next_pick()
  if not key then break end
  looked = looked + 1
  if not head then
    redis.call('ZREM', F.ring, key)
  else
    local verdict, reserved = check(key)
    if verdict == 'full' then
      redis.call('ZREM', F.ring, key)
      redis.call('SADD', F.full, key)
      waited = waited + 1
    elseif verdict ~= 'ok' then
      redis.call('ZREM', F.ring, key)
      redis.call('ZADD', F.blocked, 'GT', verdict, key)
      waited = waited + 1
    else
      local id = string.sub(head, #key + 21)
      redis.call('ZREM', F.held, head)
      local level = member_level(key, head)
      lvl_taken[level + 1] = (lvl_taken[level + 1] or 0) + 1
      if weighted then counts[level] = counts[level] - 1 end
      if tonumber(redis.call('ZINCRBY', F.hkeys, -1, key)) <= 0 then redis.call('ZREM', F.hkeys, key) end
      local packed = redis.call('HGET', F.data, id)
      if not packed and reserved then unreserve(key) end
      if packed then
        dropped[#dropped + 1] = id
        local name, data, opts, a, _, prio = cmsgpack.unpack(packed)
        charge(key, id)
        if not reserved then redis.call('HINCRBY', F.inflight, key, 1) end
        redis.call('XADD', F.kstream, '*', 'i', id, 'n', name, 'd', data, 'a', a + 1, 'o', opts,
          'k', key, 'p', prio)
        taken = taken + 1
      end
      -- Back on the ring behind the others, at the level of its next job (ring_key of
      -- lib/flow.lua without its checks: a key on the ring is neither blocked nor full,
      -- and this take just found it may run).
      if after == nil then after = key_head(F, key) or false end
      if after then
        local score = member_level(key, after) * TURN_BASE + next_turn()
        redis.call('ZADD', F.ring, score, key)
        -- Read ahead again if the key now sorts before a key still to come.
        if at <= #ahead and score < tonumber(ahead[#ahead]) then ahead = {} end
      else
        redis.call('ZREM', F.ring, key)
      end
    end
  end
end
if weighted then
  redis.call('HSET', F.flow, 'vt', vt)
  for level = 0, 9 do redis.call('HSET', F.flow, 'pass:' .. level, passes[level]) end
end
if turn then redis.call('HSET', F.flow, 'turn', turn) end
for i = 1, #dropped, 500 do
  redis.call('HDEL', F.data, unpack(dropped, i, math.min(i + 499, #dropped)))
end
for i = 1, 10 do
  if lvl_taken[i] then redis.call('HINCRBY', F.flow, 'lvl:' .. (i - 1), -lvl_taken[i]) end
end
if waited > 0 then redis.call('HINCRBY', stats, 'rate_limited', waited) end
local entries = {}
if taken > 0 then
  entries = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', taken,
    'STREAMS', F.kstream, '>')[1][2]
end
local top = -1
local first = redis.call('ZRANGE', F.ring, 0, 0, 'WITHSCORES')
if first[1] then
  top = 9 - math.floor(tonumber(first[2]) / TURN_BASE)
  if taken >= want and redis.call('HSETNX', F.flow, 'wake', 1) == 1 then
    -- More can run than this consumer could take: wake a worker blocked on its read.
    redis.call('XADD', F.kstream, '*', 'w', '1')
  end
end
local opens = -1
local nb = redis.call('ZRANGE', F.blocked, 0, 0, 'WITHSCORES')
if nb[1] then opens = tonumber(nb[2]) end
return {entries, now, opens, top}

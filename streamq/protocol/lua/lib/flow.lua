-- Flow control: jobs with a key or a priority wait in `held` until a take admits them
-- (docs/flow-control.md). Every key is fixed per queue, so scripts declare them all.
-- A script that holds or releases flow jobs passes the nine keys of
-- QueueKeys.flow_keys() from KEYS[off] on.
local TURN_BASE = 1099511627776 -- 2^40: ring score = level * 2^40 + turn
local function flow_keys(off)
  return {held = KEYS[off], data = KEYS[off + 1], ring = KEYS[off + 2],
    blocked = KEYS[off + 3], full = KEYS[off + 4], inflight = KEYS[off + 5],
    hkeys = KEYS[off + 6], flow = KEYS[off + 7], kstream = KEYS[off + 8]}
end

-- The first held member of `key` (its next job), or nil.
local function key_head(F, key)
  return redis.call('ZRANGEBYLEX', F.held, '[' .. key .. '\0', '(' .. key .. '\1',
    'LIMIT', 0, 1)[1]
end

-- Level (9 - priority) of a held member of `key`.
local function member_level(key, member)
  return tonumber(string.sub(member, #key + 2, #key + 2))
end

-- Put `key` on the ring at the level of its next job, behind the keys already there;
-- a key that waits (rate window, concurrency slot) or has nothing held leaves the ring.
local function ring_key(F, key)
  if redis.call('ZSCORE', F.blocked, key) or redis.call('SISMEMBER', F.full, key) == 1 then
    redis.call('ZREM', F.ring, key)
    return
  end
  local head = key_head(F, key)
  if not head then
    redis.call('ZREM', F.ring, key)
    return
  end
  local turn = redis.call('HINCRBY', F.flow, 'turn', 1)
  redis.call('ZADD', F.ring, member_level(key, head) * TURN_BASE + turn, key)
end

-- Hold job `id` (record `job`) under `key` at `prio`. `seq` keeps a job's place when it
-- comes back (a retry, a hand-back, a RateLimited); nil for a new one. `a` = attempts
-- made. The caller writes the rest of the record.
local function hold_job(F, job, id, key, prio, seq, name, data, opts, a)
  if not seq then seq = redis.call('HINCRBY', F.flow, 'seq', 1) end
  local level = 9 - prio
  local member = key .. '\0' .. level .. '\0' .. string.format('%016d', seq) .. '\0' .. id
  redis.call('ZADD', F.held, 0, member)
  redis.call('HINCRBY', F.flow, 'lvl:' .. level, 1) -- held jobs per level (weighted mode)
  redis.call('HSET', F.data, id, cmsgpack.pack(name, data, opts, a, key, prio))
  redis.call('ZINCRBY', F.hkeys, 1, key)
  redis.call('HSET', job, 's', 'held', 'hm', member, 'k', key, 'p', prio)
  if not redis.call('ZSCORE', F.blocked, key) and redis.call('SISMEMBER', F.full, key) == 0 then
    -- LT: a key already on the ring keeps its place, or moves up for a higher priority.
    local turn = redis.call('HINCRBY', F.flow, 'turn', 1)
    redis.call('ZADD', F.ring, 'LT', level * TURN_BASE + turn, key)
  end
  -- Wake a worker blocked on its read: one undelivered entry in kstream at a time.
  if redis.call('HSETNX', F.flow, 'wake', 1) == 1 then
    if redis.call('EXISTS', F.kstream) == 0 then  -- the group (keys.GROUP) first: takes read with it
      redis.call('XGROUP', 'CREATE', F.kstream, 'streamq', '0', 'MKSTREAM')
    end
    redis.call('XADD', F.kstream, '*', 'w', '1')
  end
  return member
end

-- The seq of a held member (to keep a job's place when it is held again).
local function member_seq(key, member)
  return tonumber(string.sub(member, #key + 4, #key + 19))
end

-- Hold a job again from its record (retry promoted, hand-back, RateLimited).
local function rehold(F, job, id)
  local r = redis.call('HMGET', job, 'n', 'd', 'o', 'a', 'k', 'p', 'hm')
  if not r[1] then return false end
  local key, prio = r[5] or '', tonumber(r[6] or '0')
  local seq = nil
  if r[7] then seq = member_seq(key, r[7]) end
  hold_job(F, job, id, key, prio, seq, r[1], r[2], r[3], tonumber(r[4] or '0'))
  redis.call('HDEL', job, 'x', 'due')
  return true
end

-- A flow job of `key` ended or went back: free its concurrency slot (callers run this only
-- once per admission: after removing the entry from the PEL they own).
local function release_slot(F, key)
  if redis.call('HINCRBY', F.inflight, key, -1) <= 0 then redis.call('HDEL', F.inflight, key) end
  if redis.call('SREM', F.full, key) == 1 then
    ring_key(F, key)
    -- A worker blocked on its read learns that the key may run again.
    if redis.call('HSETNX', F.flow, 'wake', 1) == 1 then
      redis.call('XADD', F.kstream, '*', 'w', '1')
    end
  end
end

-- Fencing: is stream entry `eid` in the group's PEL and owned by `consumer`?
-- A worker whose lease was taken over (or whose entry was handed back) fails this check,
-- so its late completion cannot overwrite the new owner's record.
local function owns(stream, group, eid, consumer)
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  return p[1] ~= nil and p[1][2] == consumer
end

-- Stream ids "ms-seq" as two numbers (ms < 2^53: exact in a Lua number); nil if malformed.
local function parse_id(eid)
  local ms, seq = string.match(eid, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(seq)
end

-- Fencing for a batch: the set of `eids` owned by `consumer`, from ONE XPENDING over the
-- batch's id range instead of one per entry (the per-call cost dominated). The range also
-- returns this consumer's other pending entries (jobs still running); when the reply may
-- have been cut at its COUNT, the ids not seen in it are checked one by one.
local function owned_set(stream, group, eids, consumer)
  local owned = {}
  if #eids == 0 then return owned end
  local lo, hi, lo_ms, lo_seq, hi_ms, hi_seq
  for _, eid in ipairs(eids) do
    local ms, seq = parse_id(eid)
    if not ms then lo = nil; break end
    if not lo or ms < lo_ms or (ms == lo_ms and seq < lo_seq) then
      lo, lo_ms, lo_seq = eid, ms, seq
    end
    if not hi or ms > hi_ms or (ms == hi_ms and seq > hi_seq) then
      hi, hi_ms, hi_seq = eid, ms, seq
    end
  end
  local complete = false
  if lo then
    local count = #eids * 2 + 100
    local p = redis.call('XPENDING', stream, group, lo, hi, count, consumer)
    for _, row in ipairs(p) do owned[row[1]] = true end
    complete = #p < count
  end
  if not complete then
    for _, eid in ipairs(eids) do
      if not owned[eid] and owns(stream, group, eid, consumer) then owned[eid] = true end
    end
  end
  return owned
end

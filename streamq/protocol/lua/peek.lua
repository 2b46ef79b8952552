--[[ peek: a job's state and the newest event id, read atomically, so a result waiter can
block on the events stream from exactly that point without missing the job's end.
KEYS[1] job hash  KEYS[2] events stream
Returns {last event id or '0-0', state or ''}
]]
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local lid = '0-0'
if last[1] then lid = last[1][1] end
return {lid, redis.call('HGET', KEYS[1], 's') or ''}

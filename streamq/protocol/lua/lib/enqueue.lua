-- What enqueue.lua and enqueue_flow.lua share.
-- The state of the job a new enqueue of `id` meets, or false when the id is free: a job
-- record that exists keeps its id (dedup), except a cancelled one, whose id is freed (a user
-- cancels a post, then schedules it again). `fresh`: the id was generated, so no record
-- can exist (each command sent from Lua costs ~5 us of a one-job call: skip the lookup).
local function existing_state(job, id, cancelled, fresh)
  if fresh then return false end
  local state = redis.call('HGET', job, 's')
  if state == 'cancelled' then
    redis.call('DEL', job)
    redis.call('ZREM', cancelled, id)
    return false
  end
  return state
end

-- When a new job is due: `at` (>= 0: absolute ms), else TIME + `delay` (> 0), else -1 (now).
local function due_of(at, delay, clock)
  if at >= 0 then return at elseif delay > 0 then return clock() + delay end
  return -1
end

-- Move due jobs from the scheduled registries to their queues, as RQ's scheduler does
-- (status queued, enqueued_at, front or back of the queue), atomically: any number of
-- workers may run it at once and each due job is enqueued exactly once. Queues whose RQ
-- scheduler lock is held are left to that scheduler (it reads, then writes: not atomic).
--
-- ARGV: 1 now (whole epoch seconds), 2 at most this many jobs per queue, 3 enqueued_at
--       (RQ's utcformat), 4-6 key prefixes (the worker's job class's job key prefix, RQ's
--       scheduled-registry and scheduler-lock prefixes), then per queue its name and its key
-- Returns {jobs moved, ids left to RQ's own path (RQ rate-limited jobs) as "queue id"...}.
local moved = 0
local special = {}
local jprefix, sprefix, lprefix = ARGV[4], ARGV[5], ARGV[6]
for i = 7, #ARGV, 2 do
  local name, qkey = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', lprefix .. name) == 0 then
    local reg = sprefix .. name
    local due = redis.call('ZRANGEBYSCORE', reg, 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
    for _, id in ipairs(due) do
      local jkey = jprefix .. id
      local f = redis.call('HMGET', jkey, 'status', 'enqueue_at_front', 'rate_limit_key',
                           'enqueue_at_front_on_retry', 'ended_at', 'ttl')
      if not f[1] then
        redis.call('ZREM', reg, id)
      elseif f[3] and f[3] ~= '' then
        special[#special + 1] = name .. ' ' .. id
      else
        redis.call('ZREM', reg, id)
        redis.call('HSET', jkey, 'status', 'queued', 'enqueued_at', ARGV[3])
        if f[6] and f[6] ~= '' then redis.call('EXPIRE', jkey, tonumber(f[6])) end
        local front = f[2] == '1' or (f[4] == '1' and f[5] and f[5] ~= '')
        if front then
          redis.call('LPUSH', qkey, id)
        else
          redis.call('RPUSH', qkey, id)
        end
        moved = moved + 1
      end
    end
  end
end
return {moved, special}

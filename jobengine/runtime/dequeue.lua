-- Take up to ARGV[1] jobs from the first non-empty queue of KEYS (priority order) and mark
-- each started the way RQ's SimpleWorker does: status, started_at, last_heartbeat and
-- worker_name on the job hash, and a `job_id:execution_id` entry in the queue's started
-- registry (rq:wip:<queue>) scored now + heartbeat TTL (job timeout + 60 s, as SimpleWorker).
-- Atomic: a job is either still on its queue or started by exactly one worker. The worker's
-- held hash (ARGV[10], keys.worker_held_key) gets one field per job taken, in the same call, so
-- the recovery of a worker that dies knows what it held (runtime/recovery.py).
--
-- KEYS: rq:queue:<name>, highest priority first
-- ARGV: 1 how many, 2 worker name, 3 started_at (RQ's utcformat), 4 now (epoch seconds),
--       5 execution id prefix (24 hex), 6 a job id already popped (BLPOP) from KEYS[1], or '',
--       7-9 key prefixes: the worker's job class's job key prefix, RQ's started-registry prefix,
--       the worker's queue class's queue key prefix
--       10 the worker's held hash
--       11 the most jobs taken at once from the last of several KEYS (the worker's background
--          lane: a job on a higher lane then waits behind at most that many of it)
-- Returns false when every queue is empty, else one flat array: the queue name, then per job
-- its id, execution id, field count and the hash's non-empty fields.
local count = tonumber(ARGV[1])
local now = tonumber(ARGV[4])
local jprefix, wprefix, qprefix = ARGV[7], ARGV[8], ARGV[9]
for k, qkey in ipairs(KEYS) do
  local ids
  if ARGV[6] ~= '' then
    ids = {ARGV[6]}
  elseif k > 1 and k == #KEYS then
    ids = redis.call('LPOP', qkey, math.min(count, tonumber(ARGV[11])))
  else
    ids = redis.call('LPOP', qkey, count)
  end
  if ids then
    local name = string.sub(qkey, #qprefix + 1)
    local out = {name}
    local wip, held = {}, {}
    local function put(value) out[#out + 1] = value end
    for i, id in ipairs(ids) do
      local jkey = jprefix .. id
      local h = redis.call('HGETALL', jkey)
      local timeout, ttl, data, fields = nil, nil, false, {}
      for j = 1, #h, 2 do  -- empty fields mean "unset" to RQ's Job.restore: not worth the bytes
        if h[j + 1] ~= '' then
          fields[#fields + 1] = h[j]
          fields[#fields + 1] = h[j + 1]
          if h[j] == 'timeout' then timeout = tonumber(h[j + 1]) elseif h[j] == 'ttl' then ttl = h[j + 1] end
          if h[j] == 'data' then data = true end
        end
      end
      if data then  -- else no such job (expired, deleted): dropped, as RQ's dequeue drops it
        redis.call('HSET', jkey, 'status', 'started', 'started_at', ARGV[3], 'last_heartbeat', ARGV[3],
                   'worker_name', ARGV[2])
        if ttl and ttl ~= '' then redis.call('PERSIST', jkey) end
        local beat = 480
        if timeout == -1 then beat = 420 elseif timeout then beat = timeout + 60 end
        local exec = ARGV[5] .. string.format('%08x', i)
        wip[#wip + 1] = now + beat
        wip[#wip + 1] = id .. ':' .. exec
        held[#held + 1] = id .. ':' .. exec
        held[#held + 1] = ARGV[4] .. ' ' .. i .. ' ' .. name
        put(id)
        put(exec)
        put(tostring(#fields / 2))
        for _, value in ipairs(fields) do put(value) end
      end
    end
    if #wip > 0 then
      redis.call('ZADD', wprefix .. name, unpack(wip))
      redis.call('HSET', ARGV[10], unpack(held))
    end
    return out
  end
end
return false

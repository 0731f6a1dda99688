-- Record a batch of finished jobs exactly as RQ's worker does for each (Job._handle_success,
-- Result.save, FinishedJobRegistry.add, job.cleanup, the started-registry removal), in one call.
--
-- ARGV: 1 worker name, 2 now (whole epoch seconds), 3-6 key prefixes (the worker's job class's
--   job key prefix, then RQ's results, finished-registry and started-registry prefixes), then 10
--   values per job: id, queue, execution id, started_at and ended_at (RQ's utcformat),
--   execution_started_at and execution_ended_at (epoch seconds as RQ writes them), result TTL
--   (RQ's result_ttl: 0 delete, -1 keep), return value (base64 of the serialized value, '' for
--   None), flags ('f' reset enqueue_at_front, 'd' the job has dependencies)
-- Returns, for the jobs that have dependents, {id, status the job had before, ...} (RQ enqueues
-- those afterwards unless the job was canceled while it ran; a job deleted for result_ttl 0 keeps
-- its dependents set for that).
local worker, now = ARGV[1], tonumber(ARGV[2])
local jprefix, rprefix, fprefix, wprefix = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local first = 7
local finished, wip, deps = {}, {}, {}
for i = first, #ARGV, 10 do deps[#deps + 1] = jprefix .. ARGV[i] .. ':dependents' end
local with_dependents = {}
if #deps > 0 and redis.call('EXISTS', unpack(deps)) > 0 then  -- rare: per job, only then
  for i = first, #ARGV, 10 do
    if redis.call('EXISTS', jprefix .. ARGV[i] .. ':dependents') == 1 then
      local status = redis.call('HGET', jprefix .. ARGV[i], 'status') or ''
      with_dependents[#with_dependents + 1] = ARGV[i]
      with_dependents[#with_dependents + 1] = status
      local ttl = tonumber(ARGV[i + 7])
      if ttl > 0 then redis.call('EXPIRE', jprefix .. ARGV[i] .. ':dependents', ttl) end
    end
  end
end
for i = first, #ARGV, 10 do
  local id, queue, exec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ttl, value, flags = tonumber(ARGV[i + 7]), ARGV[i + 8], ARGV[i + 9]
  local key, rkey = jprefix .. id, rprefix .. id
  local dkey = jprefix .. ':' .. id .. ':dependencies'  -- RQ's Job.dependencies_key spelling
  if ttl ~= 0 then
    if string.find(flags, 'f', 1, true) then
      redis.call('HSET', key, 'status', 'finished', 'started_at', ARGV[i + 3], 'ended_at', ARGV[i + 4],
                 'last_heartbeat', ARGV[i + 4], 'enqueue_at_front', '0')
    else
      redis.call('HSET', key, 'status', 'finished', 'started_at', ARGV[i + 3], 'ended_at', ARGV[i + 4],
                 'last_heartbeat', ARGV[i + 4])
    end
    if value ~= '' then
      redis.call('XADD', rkey, 'MAXLEN', '~', '10', '*', 'type', '1', 'worker_name', worker, 'return_value', value,
                 'execution_id', exec, 'execution_started_at', ARGV[i + 5], 'execution_ended_at', ARGV[i + 6])
    else
      redis.call('XADD', rkey, 'MAXLEN', '~', '10', '*', 'type', '1', 'worker_name', worker,
                 'execution_id', exec, 'execution_started_at', ARGV[i + 5], 'execution_ended_at', ARGV[i + 6])
    end
    if ttl < 0 then redis.call('PERSIST', rkey) else redis.call('EXPIRE', rkey, ttl) end
    finished[queue] = finished[queue] or {}
    table.insert(finished[queue], ttl < 0 and '+inf' or tostring(now + ttl))
    table.insert(finished[queue], id)
  end
  if ttl == 0 then
    redis.call('DEL', key, dkey, rkey)
  elseif ttl > 0 then
    redis.call('EXPIRE', key, ttl)
    if string.find(flags, 'd', 1, true) then redis.call('EXPIRE', dkey, ttl) end
  end
  wip[queue] = wip[queue] or {}
  table.insert(wip[queue], id .. ':' .. exec)
end
for queue, entries in pairs(finished) do redis.call('ZADD', fprefix .. queue, unpack(entries)) end
for queue, members in pairs(wip) do redis.call('ZREM', wprefix .. queue, unpack(members)) end
return with_dependents

-- Record a batch of finished jobs exactly as RQ's worker does for each (Job._handle_success,
-- Result.save, FinishedJobRegistry.add, job.cleanup, the started-registry removal), in one call.
--
-- ARGV: 1 worker name, 2 now (whole epoch seconds), then 10 values per job: id, queue,
--   execution id, started_at and ended_at (RQ's utcformat), execution_started_at and
--   execution_ended_at (epoch seconds as RQ writes them), result TTL (RQ's result_ttl: 0 delete,
--   -1 keep), return value (base64 of the serialized value, '' for None), flags ('f' reset
--   enqueue_at_front, 'd' the job has dependencies)
-- Returns how many of the jobs have dependents (RQ enqueues those afterwards; a job deleted for
-- result_ttl 0 keeps its dependents set for that).
local worker, now = ARGV[1], tonumber(ARGV[2])
local finished, wip, deps = {}, {}, {}
for i = 3, #ARGV, 10 do deps[#deps + 1] = 'rq:job:' .. ARGV[i] .. ':dependents' end
local dependents = 0
if #deps > 0 then dependents = redis.call('EXISTS', unpack(deps)) end
for i = 3, #ARGV, 10 do
  local id, queue, exec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ttl, value, flags = tonumber(ARGV[i + 7]), ARGV[i + 8], ARGV[i + 9]
  local key, rkey = 'rq:job:' .. id, 'rq:results:' .. id
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
    redis.call('DEL', key, key .. ':dependencies', rkey)
  elseif ttl > 0 then
    redis.call('EXPIRE', key, ttl)
    if string.find(flags, 'd', 1, true) then redis.call('EXPIRE', key .. ':dependencies', ttl) end
  end
  wip[queue] = wip[queue] or {}
  table.insert(wip[queue], id .. ':' .. exec)
end
for queue, entries in pairs(finished) do redis.call('ZADD', 'rq:finished:' .. queue, unpack(entries)) end
for queue, members in pairs(wip) do redis.call('ZREM', 'rq:wip:' .. queue, unpack(members)) end
return dependents

-- Re-create lost jobs, each at most once (jobengine.reconcile). A job whose hash exists, or that
-- reconcile already re-created in this Redis (its id is in KEYS[1]), is left alone, so concurrent
-- or repeated runs never push a job twice. Atomic: a job is re-created with its push, or not at all.
--
-- KEYS: 1 the set of re-created ids, 2 rq:queues, then per job: its hash (rq:job:<id>) and where
--       it goes: its queue (rq:queue:<q>, RPUSH) or scheduled registry (rq:scheduled:<q>, ZADD)
-- ARGV: 1 the set's TTL (seconds), then per job: id, 'q' (push) or 's' (schedule), score (epoch
--       seconds, for 's'), its queue key (a member of rq:queues), field count, field/value pairs
-- Returns 1 (re-created) or 0 (left alone) per job, in order.
local out = {}
local restored = false
local a = 2
for i = 3, #KEYS, 2 do
  local id, mode, score, qkey = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local first = a + 5
  local last = a + 4 + 2 * tonumber(ARGV[a + 4])
  a = last + 1
  if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('SISMEMBER', KEYS[1], id) == 0 then
    redis.call('HSET', KEYS[i], unpack(ARGV, first, last))
    if mode == 'q' then
      redis.call('RPUSH', KEYS[i + 1], id)
    else
      redis.call('ZADD', KEYS[i + 1], score, id)
    end
    redis.call('SADD', KEYS[2], qkey)
    redis.call('SADD', KEYS[1], id)
    restored = true
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if restored then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return out

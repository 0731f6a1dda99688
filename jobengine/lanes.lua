-- One keyset page of a lane's jobs in one state, and the size of every state, in one trip.
--
-- KEYS: 1 the list or registry paged; 2-7 the queue list, scheduled, started (wip), finished,
--       failed and canceled registries (counted).
-- ARGV: 1 mode: 'list' (the queue, head first), 'asc' or 'desc' (a registry by score);
--       2 the cursor's score ('' on the first page; a list ignores it); 3 the cursor's member
--       ('' on the first page); 4 page size; 5 RQ's job key prefix; 6 '1' when members are
--       'job id:execution id' (the started registry).
-- Returns {6 counts, then per row: member, score, status, created_at, enqueued_at, started_at,
--          ended_at, description, worker_name}. Registry rows may include members at the
--          cursor's score up to and including the cursor (the caller drops them: ties).
local out = {
  redis.call('LLEN', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
  redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6]), redis.call('ZCARD', KEYS[7]),
}
local limit = tonumber(ARGV[4])
local members, scores = {}, {}
if ARGV[1] == 'list' then
  local start = 0
  if ARGV[3] ~= '' then
    local at = redis.call('LPOS', KEYS[1], ARGV[3])
    if at then start = at + 1 end  -- gone: taken by a worker, and everything before it too
  end
  members = redis.call('LRANGE', KEYS[1], start, start + limit - 1)
  for i = 1, #members do scores[i] = tostring(start + i - 1) end
else
  local ties = 0
  if ARGV[3] ~= '' then ties = redis.call('ZCOUNT', KEYS[1], ARGV[2], ARGV[2]) end
  local rows
  if ARGV[1] == 'desc' then
    local top = ARGV[3] ~= '' and ARGV[2] or '+inf'
    rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, '-inf', 'WITHSCORES', 'LIMIT', 0, limit + ties)
  else
    local low = ARGV[3] ~= '' and ARGV[2] or '-inf'
    rows = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + ties)
  end
  for i = 1, #rows, 2 do
    members[#members + 1] = rows[i]
    scores[#scores + 1] = rows[i + 1]
  end
end
for i, member in ipairs(members) do
  local id = member
  if ARGV[6] == '1' then id = string.match(member, '^(.*):[^:]*$') or member end
  local f = redis.call('HMGET', ARGV[5] .. id, 'status', 'created_at', 'enqueued_at', 'started_at',
                       'ended_at', 'description', 'worker_name')
  out[#out + 1] = member
  out[#out + 1] = scores[i]
  for j = 1, 7 do out[#out + 1] = f[j] or '' end
end
return out

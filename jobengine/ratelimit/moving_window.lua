-- Moving-window rate limit: at most `limit` hits in any `period` seconds, checked and
-- recorded atomically in one round trip, on the Redis server's clock (one clock for every
-- worker on every machine). The limit set at run time (`jobtui limit`) is read here too,
-- so workers pick a change up on their next check.
--
-- KEYS[1]  window: sorted set of the admitted hits, score = server time in seconds
-- KEYS[2]  run-time overrides: hash queue -> limit, or "off" for unlimited
-- ARGV[1]  queue name (the field of KEYS[2])
-- ARGV[2]  configured limit, -1 for none
-- ARGV[3]  period in seconds
-- ARGV[4]  member id recorded with the hit (the job id)
--
-- Returns {allowed 1|0, limit (-1 = unlimited), hits in the window, seconds until a slot
-- opens as a string (Lua numbers would be truncated to integers)}.

if redis.replicate_commands then
    redis.replicate_commands()  -- Redis < 5: replicate effects, as TIME is not deterministic
end

local limit = tonumber(ARGV[2])
local override = redis.call('HGET', KEYS[2], ARGV[1])
if override then
    if override == 'off' then
        limit = -1
    else
        limit = tonumber(override) or limit
    end
end
if limit < 0 then
    return {1, -1, 0, '0'}
end

local period = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[4] .. '@' .. clock[1] .. '.' .. clock[2])
    redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000))
    return {1, limit, used + 1, '0'}
end

-- Full: a slot opens when the hit that makes the window full leaves it, i.e. the
-- (used - limit + 1)-th oldest (after a lowered limit, several must leave first).
local wait = period
local edge = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
if edge[2] then
    wait = tonumber(edge[2]) + period - now
end
if wait < 0.001 then
    wait = 0.001
end
return {0, limit, used, string.format('%.6f', wait)}

-- Holders whose last stamp is older than ARGV[1] seconds, on the Redis server's clock.
-- KEYS[1]: holders zset (omnimind.keys.BROKER_HOLDERS);  ARGV[1]: dead_after seconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(now - tonumber(ARGV[1])))

-- Stamp a broker message holder (one worker incarnation) alive, on the Redis server's clock.
-- KEYS[1]: holders zset (omnimind.keys.BROKER_HOLDERS);  ARGV[1]: holder id.
-- Returns {1 if the holder was known else 0 (new, or swept as dead meanwhile), now as a string}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
return {1 - added, tostring(now)}

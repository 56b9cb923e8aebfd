-- The node registry's heartbeat (omnimind.scaling.registry_store.redis), on the Redis server's clock.
-- KEYS: node hash, nodes zset;  ARGV: node id, ttl, load, latency, hardware json or '', queue load json or ''
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat_at', now, 'load_factor', ARGV[3], 'latency_ms', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'hardware', ARGV[5]) end
if ARGV[6] and ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'queue_load', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 1

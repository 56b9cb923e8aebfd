-- The node registry's register (omnimind.scaling.registry_store.redis), on the Redis server's clock.
-- KEYS: node hash, nodes zset, capabilities set
-- ARGV: node id, ttl seconds, capability-key prefix, info json, hardware json, capability...
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'info', ARGV[4], 'hardware', ARGV[5], 'registered_at', now,
           'heartbeat_at', now, 'load_factor', 0, 'latency_ms', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
for _, cap in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SREM', ARGV[3] .. cap, ARGV[1]) end
for i = 6, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
  redis.call('SADD', ARGV[3] .. ARGV[i], ARGV[1])
end
return tostring(now)

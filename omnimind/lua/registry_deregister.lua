-- The node registry's deregister (omnimind.scaling.registry_store.redis).
-- KEYS: node hash, nodes zset, capabilities set;  ARGV: node id, capability-key prefix
for _, cap in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('SREM', ARGV[2] .. cap, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1

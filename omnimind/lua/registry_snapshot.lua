-- The node registry's snapshot (omnimind.scaling.registry_store.redis), on the Redis server's clock.
-- KEYS: nodes zset, capabilities set;  ARGV: node-key prefix, capability-key prefix
-- Returns now, then 8 values per live node (id, then its fields); prunes ids whose hash expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {tostring(now)}
local caps = nil
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', ARGV[1] .. id, 'info', 'hardware', 'registered_at', 'heartbeat_at', 'load_factor',
                       'latency_ms', 'queue_load')
  if h[1] then
    table.insert(out, id)
    for i = 1, 7 do table.insert(out, h[i] or '') end
  else
    redis.call('ZREM', KEYS[1], id)
    caps = caps or redis.call('SMEMBERS', KEYS[2])
    for _, cap in ipairs(caps) do redis.call('SREM', ARGV[2] .. cap, id) end
  end
end
return out

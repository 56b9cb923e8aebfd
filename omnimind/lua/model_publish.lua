-- Publish one model version: fence check, version number, rename of the staged upload into
-- place, metadata, pointer move, receipt, retention and notice, atomically (omnimind.models.store).
-- The model store prepends the fence rules (fence.lua, fence_check) to this file.
-- KEYS: fence, seq, active, meta, staging, receipt
-- ARGV: term, index, meta JSON (without version/parent/created_at), parent ("" = the active one),
--       keep, name, sha256, channel, blob key prefix, receipt TTL,
--       expected active version ("" = any, "none" = no version active yet)
-- Returns {'ok', meta, deleted} | {'stale', term, index} | {'nostaging'} | {'moved', active} | {'gone', version}
local done = redis.call('GET', KEYS[6])
if done then
  -- a retry of a publish that already committed (its reply was lost): answer it again
  redis.call('DEL', KEYS[5])
  local meta = redis.call('HGET', KEYS[4], done)
  if meta then return {'ok', meta, 0} end
  return {'gone', done}
end
local stale = fence_check(KEYS[1], ARGV[1], ARGV[2])
if stale then
  redis.call('DEL', KEYS[5])
  return {'stale', stale[1], stale[2]}
end
if redis.call('EXISTS', KEYS[5]) == 0 then return {'nostaging'} end
if ARGV[11] ~= '' then
  -- the publisher built on a version that is no longer active (a newer publish, a rollback)
  local active = redis.call('GET', KEYS[3]) or 'none'
  if active ~= ARGV[11] then
    redis.call('DEL', KEYS[5])
    return {'moved', active}
  end
end
local v = redis.call('INCR', KEYS[2])
local retained = redis.call('HKEYS', KEYS[4])
for _, k in ipairs(retained) do
  local n = tonumber(k)
  if n and n >= v then v = n + 1 end
end
local vs = string.format('%d', v)
redis.call('SET', KEYS[2], vs)
local parent = ARGV[4]
if parent == '' then parent = redis.call('GET', KEYS[3]) or 'null' end
local t = redis.call('TIME')
local created = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local meta = '{"version":' .. vs .. ',"parent_version":' .. parent .. ',"created_at":' .. created
  .. ',' .. string.sub(ARGV[3], 2)
redis.call('RENAME', KEYS[5], ARGV[9] .. vs)
redis.call('PERSIST', ARGV[9] .. vs)
redis.call('HSET', KEYS[4], vs, meta)
redis.call('SET', KEYS[3], vs)
redis.call('SET', KEYS[6], vs, 'EX', tonumber(ARGV[10]))
local keep = tonumber(ARGV[5])
local nums = {}
for _, k in ipairs(retained) do local n = tonumber(k); if n then table.insert(nums, n) end end
table.sort(nums)
local count = #nums + 1
local deleted = 0
for _, n in ipairs(nums) do
  if count <= keep then break end
  local ns = string.format('%d', n)
  if ns ~= vs then
    redis.call('UNLINK', ARGV[9] .. ns)
    redis.call('HDEL', KEYS[4], ns)
    count = count - 1
    deleted = deleted + 1
  end
end
redis.call('PUBLISH', ARGV[8], cjson.encode({name=ARGV[6], version=v, sha256=ARGV[7], event='publish'}))
return {'ok', meta, deleted}

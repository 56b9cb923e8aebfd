-- Point a model's active version at a retained version that the caller has verified
-- (omnimind.models.store.ModelStore.rollback). The store prepends the fence rules
-- (fence.lua, fence_check) to this file.
-- KEYS: fence, active, meta, blob of the target
-- ARGV: term, index, version, name, channel, verified sha256, verified size (bytes)
-- The caller fetched the blob, checked its SHA-256 and decoded (and maybe loaded) it; the
-- version's metadata must still name that SHA-256 and its blob still have that size, else
-- the blob was replaced between the check and this script and nothing moves. Both checks
-- come before the fence check, which records a newer token: a refused rollback writes nothing.
-- Returns {'ok', meta, previous} | {'unknown'} | {'changed', sha256 now, size now} | {'stale', term, index}
local meta = redis.call('HGET', KEYS[3], ARGV[3])
if not meta or redis.call('EXISTS', KEYS[4]) == 0 then return {'unknown'} end
local decoded, parsed = pcall(cjson.decode, meta)
local sha = ''
if decoded and type(parsed) == 'table' and type(parsed['sha256']) == 'string' then sha = parsed['sha256'] end
local size = redis.call('STRLEN', KEYS[4])
if sha ~= ARGV[6] or size ~= tonumber(ARGV[7]) then return {'changed', sha, size} end
local stale = fence_check(KEYS[1], ARGV[1], ARGV[2])
if stale then return {'stale', stale[1], stale[2]} end
local previous = redis.call('GET', KEYS[2]) or ''
redis.call('SET', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[5], cjson.encode({name=ARGV[4], version=tonumber(ARGV[3]), sha256=sha, event='rollback'}))
return {'ok', meta, previous}

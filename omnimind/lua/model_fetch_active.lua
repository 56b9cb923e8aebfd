-- The active version of a model with its metadata and blob, read in one step, so that a
-- publish retiring that version meanwhile can never leave a reader with a pointer to nothing.
-- KEYS[1]: active pointer; KEYS[2]: metadata hash;  ARGV[1]: blob key prefix.
-- Returns false when nothing is active, else {version, metadata or false, blob or false}.
local version = redis.call('GET', KEYS[1])
if not version then return false end
return {version, redis.call('HGET', KEYS[2], version), redis.call('GET', ARGV[1] .. version)}

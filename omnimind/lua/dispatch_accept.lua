-- Accept one scheduled dispatch (omnimind.scaling.dispatch.DispatchGuard), atomically: the
-- fence's term, then the slot. The guard prepends fence.lua (term_check) to this file.
-- KEYS: fence hash, slot key, accepted stream
-- ARGV: term, index, slot, maxlen, slot ttl, task id
-- Returns {'stale', term, index} | {'duplicate'} | {'accepted'}
-- The slot key holds the id of the task message that ran the slot: the same
-- message redelivered (its worker died mid-run) may run it again; another
-- message for that slot (a new leader's resend) may not.
local newest = term_check(KEYS[1], ARGV[1], ARGV[2])
if newest then return {'stale', newest[1], newest[2]} end
local owner = redis.call('GET', KEYS[2])
if owner then
  if owner == ARGV[6] then
    -- A write, so that a WAIT after this script confirms the slot's replication too.
    redis.call('EXPIRE', KEYS[2], ARGV[5])
    return {'accepted'}
  end
  return {'duplicate'}
end
redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'slot', ARGV[3], 'term', ARGV[1], 'index', ARGV[2])
return {'accepted'}

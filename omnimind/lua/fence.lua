-- The fence rules (omnimind.fence): two Lua functions that every fenced script starts with.
-- The model store prepends this file to model_publish.lua and model_rollback.lua, the
-- dispatch guard (omnimind.scaling.dispatch) to dispatch_accept.lua.
-- A fence key is a HASH term/index: the newest token its resource has accepted.
-- term/index are the offered token as strings ("" for an unfenced write). Both functions
-- return nil when they accept (and record the token), else {newest_term, newest_index} as
-- strings. They compare with tonumber (exact below 2**53) and store the strings verbatim
-- (Lua would turn large numbers into 1.2e+15).
-- fence_check: refuse a token older than the newest, lexicographically (term, then index);
-- an unfenced write passes only while the key was never fenced, and does not fence it.
local function fence_check(key, term, index)
  local cur = redis.call('HMGET', key, 'term', 'index')
  if term == '' then
    if cur[1] then return {cur[1], cur[2]} end
    return nil
  end
  if cur[1] then
    local ct, ci = tonumber(cur[1]), tonumber(cur[2])
    local t, i = tonumber(term), tonumber(index)
    if t < ct or (t == ct and i < ci) then return {cur[1], cur[2]} end
  end
  redis.call('HSET', key, 'term', term, 'index', index)
  return nil
end
-- term_check (a fenced token only): refuse an older term, accept any index of the newest
-- term, and record the newest token.
local function term_check(key, term, index)
  local cur = redis.call('HMGET', key, 'term', 'index')
  if cur[1] then
    local ct, ci = tonumber(cur[1]), tonumber(cur[2])
    local t, i = tonumber(term), tonumber(index)
    if t < ct then return {cur[1], cur[2]} end
    if t == ct and i <= ci then return nil end
  end
  redis.call('HSET', key, 'term', term, 'index', index)
  return nil
end

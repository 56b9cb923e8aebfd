-- Take one message for a worker and record it as held, in one step: the message is in its
-- queue or in kombu's unacked hash (with its holder), never in neither (omnimind.redelivery).
-- KEYS[1..L]: queue lists in kombu's order (priority steps x queues, as its BRPOP names them);
-- KEYS[L+1..n-3]: those queues' doorbells; KEYS[n-2]: kombu's unacked hash; KEYS[n-1]: kombu's
-- unacked index; KEYS[n]: the holder's held set.
-- ARGV[1]: now (the client's clock, as kombu scores its unacked index); ARGV[2]: L.
-- Returns {queue list, message, left}, or false when every list is empty. left: the length of
-- the first list, from the one taken from on, that still holds messages (0: none does).
-- When none does, the doorbells are cleared: every token there rang for a message already
-- taken, and would only wake a worker to find nothing.
local n = #KEYS
local lists = tonumber(ARGV[2])

-- The lists before ``from`` were found empty by this script already.
local function left_from(from)
  for i = from, lists do
    local left = redis.call('LLEN', KEYS[i])
    if left > 0 then
      return left
    end
  end
  if n - 3 > lists then
    redis.call('DEL', unpack(KEYS, lists + 1, n - 3))
  end
  return 0
end

for i = 1, lists do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, message = pcall(cjson.decode, item)
    local props = ok and type(message) == 'table' and message['properties']
    local tag = type(props) == 'table' and props['delivery_tag']
    local info = type(props) == 'table' and props['delivery_info']
    if type(tag) == 'string' and type(info) == 'table' then
      -- kombu's own entry format, [payload, exchange, routing key], with the payload's text as it was.
      local entry = '[' .. item .. ',' .. cjson.encode(info['exchange'] or '') .. ',' ..
                    cjson.encode(info['routing_key'] or '') .. ']'
      redis.call('HSET', KEYS[n - 2], tag, entry)
      redis.call('ZADD', KEYS[n - 1], ARGV[1], tag)
      redis.call('SADD', KEYS[n], tag)
    end
    -- Not a kombu message: handed over unrecorded, as a plain BRPOP would (kombu drops it).
    return {KEYS[i], item, left_from(i)}
  end
end
left_from(lists + 1)
return false

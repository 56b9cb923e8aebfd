-- Record one learn call's feedback in the experience stream, once per task id.
-- KEYS: experience stream, done marker (keys.learn_done), drift-event stream
-- ARGV: maxlen, done TTL (s), outcome JSON, node id, served version, drift maxlen,
--       R (rows), R pairs x, y (JSON), D (drift markers), D pairs (row offset, event JSON)
-- A drift marker goes in the experience stream before the row at its offset, so a
-- reader walking back from the newest sample stops at the change point.
-- Returns 1 when recorded, 0 when this task id was recorded before (a redelivery).
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[2]) then
  return 0
end
local rows = tonumber(ARGV[7])
local markers_at = 8 + 2 * rows
local markers = tonumber(ARGV[markers_at])
local next_marker = 1
local function add_markers_before(row)
  while next_marker <= markers and tonumber(ARGV[markers_at + 2 * next_marker - 1]) <= row do
    local event = ARGV[markers_at + 2 * next_marker]
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'drift', event, 'n', ARGV[4])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'node_id', ARGV[4], 'event', event)
    next_marker = next_marker + 1
  end
end
for i = 0, rows - 1 do
  add_markers_before(i)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    'x', ARGV[8 + 2 * i], 'y', ARGV[9 + 2 * i], 'v', ARGV[5], 'n', ARGV[4])
end
add_markers_before(rows)
return 1

-- The view commit (STYLE.md principle 4): one match's card, position, history entry, the
-- event's notifications and the live-matches index move together or not at all. The only
-- writer of the Redis view: the streams worker, `stumpcast rebuild`, the tests and the
-- benchmarks all run this script through schemas/viewcommit.py.
--
-- KEYS: 1 card, 2 position hash, 3 history stream, 4 notifications stream, 5 live zset
--       (optional). Keys 1-4 share the match's hash tag, so on Redis Cluster they are in one
--       slot. The live zset lists every match and has no tag: on a cluster the caller leaves it
--       out and ZADDs it after the script (schemas/viewcommit.py), since one script cannot
--       touch two slots (CROSSSLOT).
-- ARGV: 1 mode ("commit" | "reset"), 2 epoch, 3 seq, 4 prev_seq, 5 card bytes,
--       6 update bytes, 7 history maxlen, 8 now_ms (live-set score), 9 match_id, then pairs
--       (entry id, bytes) of notifications.
-- Returns {status, stored_epoch, stored_seq}:
--   1 applied; 0 no-op (seq already stored: a replay changes nothing);
--  -1 conflict (the stored position is not the one the writer folded from, or is missing,
--     or a reset does not raise the epoch).
-- History entry fields (schemas/view.py): 'u' UPDATE_FIELD, the update bytes; 't' COMMIT_FIELD,
-- the commit instant in ms since the Unix epoch by the Redis clock (TIME: Redis >= 5 replicates
-- a script's effects, so a non-deterministic read before the writes is allowed).
local mode = ARGV[1]
local epoch = tonumber(ARGV[2])
local seq = tonumber(ARGV[3])
local prev = tonumber(ARGV[4])
local pos = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local s_epoch = tonumber(pos[1])
local s_seq = tonumber(pos[2])

if mode == 'commit' then
  if s_seq then
    if s_seq >= seq then return {0, s_epoch, s_seq} end
    if s_epoch ~= epoch or s_seq ~= prev then return {-1, s_epoch, s_seq} end
  elseif prev ~= 0 then
    return {-1, -1, -1}
  end
elseif mode == 'reset' then
  if s_epoch and s_epoch >= epoch then return {-1, s_epoch, s_seq or -1} end
  redis.call('DEL', KEYS[3])
else
  return redis.error_reply('viewcommit: unknown mode ' .. tostring(mode))
end

-- Built from the strings TIME returns, so no float formatting touches the digits.
local now = redis.call('TIME')
local commit_ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))

redis.call('SET', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', seq)
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[7], seq .. '-0', 'u', ARGV[6], 't', commit_ms)
-- Notifications carry IDs "{seq}-{i}"; one not above the stream's last ID is already there.
for i = 10, #ARGV - 1, 2 do
  redis.pcall('XADD', KEYS[4], ARGV[i], 'u', ARGV[i + 1])
end
if KEYS[5] then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[8]), ARGV[9])
end
return {1, epoch, seq}

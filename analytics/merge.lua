-- Merge one window's per-partition partials (analytics workers) and publish the result.
-- Scripts run one at a time, so the last partition to report always sees every partial.
-- KEYS: 1 partials hash, 2 watching stream, 3 concurrency hash, 4 views set/HLL
-- ARGV: 1 partitions of the topic, 2 final "1"|"0", 3 match id, 4 window start ms,
--       5 window end ms, 6 now ms, 7 views mode "exact"|"hll", 8 TTL s, 9 stream maxlen,
--       10.. pairs (partition, JSON {"region|cdn": [sessions, beats, bitrate_sum, buffering_ms]})
-- Returns {complete 0|1, JSON of the summed groups}.
-- A partition's final partial of a window is written once: the first write wins. A partition
-- re-assigned after a rebalance or restart may close a window again on part of its beats (the
-- faust engine resumes from its committed offset without the windows it had closed; the
-- confluent worker sends an empty "none of the match's sessions here" partial for every window
-- it closed before): overwriting would lose sessions, the undercount seen after a cold start.
-- Live partials (ARGV[2] == "0") are provisional and always replaced.
local write = ARGV[2] == '1' and 'HSETNX' or 'HSET'
for i = 10, #ARGV, 2 do
  redis.call(write, KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
local vals = redis.call('HVALS', KEYS[1])
local totals = {}
for _, v in ipairs(vals) do
  for g, s in pairs(cjson.decode(v)) do
    local t = totals[g]
    if not t then t = {0, 0, 0, 0}; totals[g] = t end
    for j = 1, 4 do t[j] = t[j] + s[j] end
  end
end
local encoded = cjson.encode(totals)
if #vals < tonumber(ARGV[1]) then
  return {0, encoded}
end
local ws = tonumber(ARGV[4])
if ARGV[2] == '1' then
  local last = tonumber(redis.call('HGET', KEYS[3], '_window_start_ms') or '-1')
  if ws >= last then
    redis.call('HSET', KEYS[3], '_window_start_ms', ARGV[4])
    for g, t in pairs(totals) do
      redis.call('HSET', KEYS[3], g, cjson.encode(t))
    end
  end
  return {1, encoded}
end
local views
if ARGV[7] == 'hll' then
  views = redis.call('PFCOUNT', KEYS[4])
else
  views = redis.call('SCARD', KEYS[4])
end
local total = totals['*|*'] or {0, 0, 0, 0}
local sig = ARGV[4] .. ':' .. string.format('%d', total[1]) .. ':' .. views
local prev = redis.call('HGET', KEYS[3], '_live')
if prev then
  local pws = tonumber(string.match(prev, '^(-?%d+):'))
  if pws and pws > ws then return {1, encoded} end  -- never move the counter back in time
end
if prev ~= sig then
  redis.call('HSET', KEYS[3], '_live', sig)
  local doc = string.format(
    '{"type":"watching","v":1,"match_id":%s,"concurrent":%d,"views":%d,' ..
    '"window_start_ms":%s,"window_end_ms":%s,"final":false,"ts_ms":%s,"views_mode":"%s"}',
    cjson.encode(ARGV[3]), total[1], views, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'u', doc)
end
return {1, encoded}

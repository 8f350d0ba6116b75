-- Sliding-window send logs (sorted sets of send times), admitted together or not at all.
-- KEYS: one log each. ARGV: window_ms, margin_ms, member, then per log: limit (-1: none), spacing_from,
-- spacing_ms, record (1: log the send in it, 0: only count it).
-- Returns {wait_ms, now_ms, counted...}: 0 means a send was logged in every log, at now_ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, margin, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local wait = 0
local result = {0, now}
for i, key in ipairs(KEYS) do
  local limit, from, spacing = tonumber(ARGV[4 * i]), tonumber(ARGV[1 + 4 * i]), tonumber(ARGV[2 + 4 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if limit >= 0 and n >= limit then
    local frees = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(frees[2]) + window - now, 1)
  elseif spacing > 0 and n > 0 and n >= from then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    wait = math.max(wait, tonumber(last[2]) + spacing - now)
  end
  result[2 + i] = redis.call('ZCOUNT', key, '(' .. (now - window + margin), '+inf')
end
if wait <= 0 then
  for i, key in ipairs(KEYS) do
    if ARGV[3 + 4 * i] == '1' then
      redis.call('ZADD', key, now, now .. ':' .. member)
      redis.call('PEXPIRE', key, window)
    end
  end
end
result[1] = math.floor(wait)
return result

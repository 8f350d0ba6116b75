-- The state's clock and the records named, in one call to the node that holds them.
-- KEYS: records. Returns {seconds, microseconds, value or false for each key}.
local t = redis.call('TIME')
local result = {t[1], t[2]}
for i, key in ipairs(KEYS) do
  result[2 + i] = redis.call('GET', key)
end
return result

-- Replace a record only if it still holds what the caller read (optimistic concurrency).
-- KEYS[1]: the record. ARGV: expected value ('' for none), new value ('' deletes), time to live in ms.
-- Returns 1 when replaced, 0 when someone changed it first.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1

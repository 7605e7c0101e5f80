-- Adds a finished request's tokens to its scopes' token windows.
-- KEYS, two per scope: token log (zset), token sum (string).
-- ARGV: request id, tokens.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1] .. ':' .. ARGV[2]
for i = 1, #KEYS / 2 do
  local log, sum = KEYS[2*i-1], KEYS[2*i]
  redis.call('ZADD', log, now, member)
  redis.call('INCRBY', sum, ARGV[2])
  redis.call('PEXPIRE', log, 60000)
  redis.call('PEXPIRE', sum, 60000)
end
return 1

-- Settles a reservation to the request's real cost (see reserve.lua).
-- ARGV: prefix, reservation id, amount, day and month reserved in, cost, current
-- day and month, then the scope ids.
local P, id, amount = ARGV[1], ARGV[2], tonumber(ARGV[3])
local day, month, cost, now_day, now_month = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
local DAY_TTL, MONTH_TTL = 3 * 86400000, 40 * 86400000
for i = 9, #ARGV do
  local scope = ARGV[i]
  local spent = cost
  local held = 1
  if amount > 0 then
    held = redis.call('ZREM', P .. 'bz:' .. scope, id .. ':' .. amount .. ':' .. day .. ':' .. month)
  end
  if held == 1 then
    local od, om = P .. 'b:' .. scope .. ':d:' .. day, P .. 'b:' .. scope .. ':m:' .. month
    redis.call('HINCRBY', od, 'reserved', -amount)
    redis.call('HINCRBY', om, 'reserved', -amount)
    redis.call('PEXPIRE', od, DAY_TTL)
    redis.call('PEXPIRE', om, MONTH_TTL)
  else
    -- Its lease ran out first and its whole amount was charged: correct it.
    spent = cost - amount
  end
  local d, m = P .. 'b:' .. scope .. ':d:' .. now_day, P .. 'b:' .. scope .. ':m:' .. now_month
  redis.call('HINCRBY', d, 'spent', spent)
  redis.call('HINCRBY', m, 'spent', spent)
  redis.call('PEXPIRE', d, DAY_TTL)
  redis.call('PEXPIRE', m, MONTH_TTL)
end
return 1

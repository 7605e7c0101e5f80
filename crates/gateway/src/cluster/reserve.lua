-- Reserves a request's worst case under every scope, all or nothing (see
-- ledger.rs). Per scope and period a hash holds `spent` and `reserved`
-- (pico-dollars): <prefix>b:<scope>:d:<day> and <prefix>b:<scope>:m:<month>;
-- open reservations are in <prefix>bz:<scope> (zset: lease end ->
-- "id:amount:day:month"), so that one whose server died is charged in full
-- when its lease ends instead of being held forever.
-- ARGV: prefix, reservation id, amount, lease end (ms), day, month, then per
-- scope: scope id, daily budget, monthly budget (-1: none).
-- Returns {1, then per scope its day and month spend (settled)} when reserved, {0, scope index, day committed, month committed}
-- when a budget cannot cover it, {-1} when the ledger has not been seeded.
local P, id, amount, lease_end = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local day, month = ARGV[5], ARGV[6]
if redis.call('EXISTS', P .. 'b:seeded') == 0 then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local DAY_TTL, MONTH_TTL = 3 * 86400000, 40 * 86400000

local function dkey(scope, d) return P .. 'b:' .. scope .. ':d:' .. d end
local function mkey(scope, m) return P .. 'b:' .. scope .. ':m:' .. m end

-- Reservations past their lease: released, and charged in full as spent now.
local function sweep(scope)
  local open = P .. 'bz:' .. scope
  local old = redis.call('ZRANGEBYSCORE', open, '-inf', now)
  for _, m in ipairs(old) do
    local _, amt, d, mo = string.match(m, '^(.-):(%-?%d+):(%-?%d+):(%-?%d+)$')
    amt = tonumber(amt) or 0
    redis.call('HINCRBY', dkey(scope, d), 'reserved', -amt)
    redis.call('HINCRBY', mkey(scope, mo), 'reserved', -amt)
    redis.call('PEXPIRE', dkey(scope, d), DAY_TTL)
    redis.call('PEXPIRE', mkey(scope, mo), MONTH_TTL)
    redis.call('HINCRBY', dkey(scope, day), 'spent', amt)
    redis.call('HINCRBY', mkey(scope, month), 'spent', amt)
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', open, '-inf', now)
    redis.call('PEXPIRE', dkey(scope, day), DAY_TTL)
    redis.call('PEXPIRE', mkey(scope, month), MONTH_TTL)
  end
end

local function committed(key)
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  return (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
end

local n = (#ARGV - 6) / 3
for i = 1, n do
  local scope = ARGV[4 + 3*i]
  local daily, monthly = tonumber(ARGV[5 + 3*i]), tonumber(ARGV[6 + 3*i])
  if daily >= 0 or monthly >= 0 then
    sweep(scope)
    local dc, mc = committed(dkey(scope, day)), committed(mkey(scope, month))
    if (daily >= 0 and dc + amount > daily) or (monthly >= 0 and mc + amount > monthly) then
      return {0, i, dc, mc}
    end
  end
end
local out = {1}
for i = 1, n do
  local scope = ARGV[4 + 3*i]
  local d, m = dkey(scope, day), mkey(scope, month)
  redis.call('HINCRBY', d, 'reserved', amount)
  redis.call('HINCRBY', m, 'reserved', amount)
  redis.call('PEXPIRE', d, DAY_TTL)
  redis.call('PEXPIRE', m, MONTH_TTL)
  if amount > 0 then
    local open = P .. 'bz:' .. scope
    redis.call('ZADD', open, lease_end, id .. ':' .. amount .. ':' .. day .. ':' .. month)
    redis.call('PEXPIRE', open, MONTH_TTL)
  end
  out[#out + 1] = tonumber(redis.call('HGET', d, 'spent') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', m, 'spent') or '0')
end
return out

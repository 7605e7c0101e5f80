-- Admits one request under every scope given, all or nothing (see limiter.rs).
-- KEYS, four per scope: request log (zset: time -> id), token log (zset: time ->
-- "id:tokens"), token sum (string), concurrency slots (zset: lease end -> id).
-- ARGV: request id, slot lease (ms), then per scope: rpm, tpm, concurrency
-- (0: no such limit).
-- Returns {0, scope index, kind (1 requests, 2 tokens, 3 concurrency), limit,
-- retry after ms} on a refusal, else {1, limit, remaining, reset ms} for the
-- tightest request limit ({1, -1, -1, 0} when none).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local id, lease = ARGV[1], tonumber(ARGV[2])
local n = #KEYS / 4

local function tokens_of(member)
  return tonumber(string.match(member, ':(%d+)$')) or 0
end

-- Drops finished requests that left the window from the token log and its sum.
local function token_sum(log, sum)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - W)
  if #old > 0 then
    local gone = 0
    for _, m in ipairs(old) do gone = gone + tokens_of(m) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - W)
    redis.call('DECRBY', sum, gone)
  end
  if redis.call('EXISTS', log) == 0 then
    redis.call('DEL', sum)
    return 0
  end
  return tonumber(redis.call('GET', sum) or '0')
end

-- Check every scope first: a refusal changes nothing but expired entries.
for i = 1, n do
  local requests, tokens, sum, slots = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local rpm, tpm, conc = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2])
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', requests, '-inf', now - W)
    local count = redis.call('ZCARD', requests)
    if count >= rpm then
      local oldest = redis.call('ZRANGE', requests, count - rpm, count - rpm, 'WITHSCORES')
      return {0, i, 1, rpm, math.max(1, tonumber(oldest[2]) + W - now)}
    end
  end
  if tpm > 0 then
    local left = token_sum(tokens, sum)
    if left >= tpm then
      -- Room comes back as finished requests leave the window, oldest first.
      local at = now
      local entries = redis.call('ZRANGE', tokens, 0, 9999, 'WITHSCORES')
      for j = 1, #entries, 2 do
        left = left - tokens_of(entries[j])
        at = tonumber(entries[j + 1]) + W
        if left < tpm then break end
      end
      return {0, i, 2, tpm, math.max(1, at - now)}
    end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('ZCARD', slots) >= conc then
      return {0, i, 3, conc, 1000}
    end
  end
end

local best_limit, best_left, best_reset = -1, -1, 0
for i = 1, n do
  local requests, slots = KEYS[4*i-3], KEYS[4*i]
  local rpm, conc = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+2])
  if rpm > 0 then
    redis.call('ZADD', requests, now, id)
    redis.call('PEXPIRE', requests, W)
    local count = redis.call('ZCARD', requests)
    local first = redis.call('ZRANGE', requests, 0, 0, 'WITHSCORES')
    local left = math.max(0, rpm - count)
    if best_left < 0 or left < best_left then
      best_limit, best_left, best_reset = rpm, left, tonumber(first[2]) + W - now
    end
  end
  if conc > 0 then
    redis.call('ZADD', slots, now + lease, id)
    redis.call('PEXPIRE', slots, lease)
  end
end
return {1, best_limit, best_left, best_reset}

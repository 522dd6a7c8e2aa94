-- DRAW: spent cost draws reservations down (admit.lua writes them): at one
-- level, by at most what is left there, so a reservation never goes below
-- zero and spending past the estimate simply counts as spent.
-- KEYS: the reservation hashes, one per intent.
-- ARGV: 1 the level's field ("a" the agent's, drawn at the heartbeats'
-- commit; "s" the scopes', drawn when the rollup worker counts them), then
-- per key the intent's cost just counted (nano-dollars).
-- Answers the number of reservations drawn.

-- Decimal strings compare by length first (see merge.lua).
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local f = ARGV[1]
local drawn = 0
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], f, f == 'a' and 'ka' or 'ks')
  local left, cost = r[1], ARGV[1 + i]
  if left and left ~= '0' and cost ~= '0' then
    -- What is left fits a double exactly (at most CM_MONEY_MAX), so d does.
    local d = ge(cost, left) and left or cost
    redis.call('HINCRBY', KEYS[i], f, '-' .. d)
    for k in string.gmatch(r[2] or '', '[^\n]+') do redis.call('DECRBY', k, d) end
    drawn = drawn + 1
  end
end
return drawn

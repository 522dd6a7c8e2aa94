-- DRAINED: a batch is committed to PostgreSQL: its entries leave the queue,
-- and the increments of those PostgreSQL found to be duplicates (a retry
-- that came after its dedupe mark expired) are taken back. An entry's
-- increments are taken back only by the call that deletes it, so a batch
-- drained twice takes nothing back twice.
-- KEYS: 1 the queue, 2 the queue's done id, then 3 per duplicate (its hour,
-- day and month window hashes).
-- ARGV: 1 the first id after the batch, 2 the batch's last id, 3 the number
-- of duplicates, then per duplicate its id and its nine deltas (as ACK's).
local fields = {'cost', 'tin', 'tout', 'calls', 'tc', 'tl', 'it', 'is', 'if'}
local pos = 4
for i = 1, tonumber(ARGV[3]) do
  local k = 2 + 3 * (i - 1)
  if redis.call('XDEL', KEYS[1], ARGV[pos]) == 1 then
    -- As ACK counted it; a window gone (expired) holds nothing to take back.
    for g = 1, 3 do
      local key = KEYS[k + g]
      if redis.call('EXISTS', key) == 1 then
        for f = 1, (g == 3 and 9 or 1) do
          local d = ARGV[pos + f]
          if d ~= '0' then redis.call('HINCRBY', key, fields[f], '-' .. d) end
        end
      end
    end
  end
  pos = pos + 10
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
-- The done id only grows: ids are (ms, seq), both below 2^53.
local function parse(id)
  local ms, seq = string.match(id or '0-0', '^(%d+)-(%d+)$')
  return tonumber(ms or 0), tonumber(seq or 0)
end
local cms, cseq = parse(redis.call('GET', KEYS[2]))
local nms, nseq = parse(ARGV[2])
if nms > cms or (nms == cms and nseq > cseq) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1

-- wrk script for the costmesh benchmark (bench/run.sh).
--
--   wrk -t T -c C -d D -s bench/load.lua URL -- MODE KEY NONCE AGENTS RATE CONNS THREADS
--
-- MODE    single  one heartbeat per POST /v1/mesh/heartbeat
--         batch   100 heartbeats per POST (a {"heartbeats":[...]} body)
--         intent  POST /v1/mesh/intents, a fresh intent id each time
--         spend   GET /v1/mesh/agents/<agent>/spend?window=day
-- KEY     the admin key (x-api-key)
-- NONCE   makes ids unique across runs and phases
-- AGENTS  agents are agent://default/bench/a0 .. a<AGENTS-1>, picked at random
-- RATE    0: as fast as the connections go (closed loop); N > 0: paced to
--         about N requests/s in all, by a per-connection delay() between a
--         response and the next request, corrected each second by the rate
--         achieved (dithered to keep the fractional ms). Latency is measured
--         from the write of each request, so the pause is not counted in it.
-- CONNS   the -c value, THREADS the -t value (for the pacing arithmetic)
--
-- done() prints one line "RESULT key=value ..." that run.sh parses:
-- latency percentiles in microseconds (p99.9 included, which --latency does
-- not print), non-2xx count, socket errors, and the CPU time wrk itself used
-- (utime+stime ticks from /proc/self/stat).

local counter = 0
local threads = {}

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

local mode, key, nonce, agents, rate, conns
local seq = 0
local hdr_json, hdr_get
local batch = 100

function init(args)
   mode = args[1] or "single"
   key = args[2] or ""
   nonce = args[3] or "n"
   agents = tonumber(args[4] or "1000")
   rate = tonumber(args[5] or "0")
   conns = tonumber(args[6] or "64")
   math.randomseed(os.time() * 1000 + (tid or 0))
   hdr_json = {["x-api-key"] = key, ["Content-Type"] = "application/json"}
   hdr_get = {["x-api-key"] = key}
   if rate > 0 then
      -- Each connection waits `pause` ms between a response and its next
      -- request. Starting from CONNS*1000/RATE, the pause is corrected once
      -- a second (os.time() is all the clock wrk's Lua has) by what this
      -- thread achieved, so the response time is taken out of it:
      -- per connection, cycle = latency + pause, and we want cycle =
      -- mine/target where mine is this thread's connections.
      local nthreads = tonumber(args[7] or "2")
      local target = rate / nthreads          -- requests/s for this thread
      local mine = conns / nthreads           -- connections of this thread
      local pause = conns * 1000.0 / rate
      local sec, count, seen = os.time(), 0, 0
      -- defined only when pacing: wrk checks for delay() after init()
      delay = function()
         count = count + 1
         local now = os.time()
         if now ~= sec then
            seen = seen + 1
            if seen > 1 and count > 0 then -- the first second is partial
               local want = mine * 1000.0 / target
               local got = mine * 1000.0 / (count / (now - sec))
               pause = math.max(0, pause + 0.7 * (want - got))
            end
            sec, count = now, 0
         end
         local whole = math.floor(pause)
         if math.random() < pause - whole then return whole + 1 end
         return whole
      end
   end
end

local function hb(a)
   seq = seq + 1
   return string.format(
      '{"agent":"agent://default/bench/a%d","id":"%s-%d-%d","intent_id":"int_a%d",' ..
      '"metrics":{"cost_usd":0.003,"tokens_in":2100,"tokens_out":850,"llm_calls":4}}',
      a, nonce, tid, seq, a)
end

function request()
   local a = math.random(0, agents - 1)
   if mode == "single" then
      return wrk.format("POST", "/v1/mesh/heartbeat", hdr_json, hb(a))
   elseif mode == "batch" then
      local items = {}
      for i = 1, batch do items[i] = hb(math.random(0, agents - 1)) end
      return wrk.format("POST", "/v1/mesh/heartbeat", hdr_json,
                        '{"heartbeats":[' .. table.concat(items, ",") .. ']}')
   elseif mode == "intent" then
      seq = seq + 1
      return wrk.format("POST", "/v1/mesh/intents", hdr_json,
         string.format('{"agent":"agent://default/bench/a%d","intent_id":"i-%s-%d-%d"}', a, nonce, tid, seq))
   else
      return wrk.format("GET",
         string.format("/v1/mesh/agents/agent%%3A%%2F%%2Fdefault%%2Fbench%%2Fa%d/spend?window=day", a),
         hdr_get, nil)
   end
end

local function cpu_ticks()
   local f = io.open("/proc/self/stat", "r")
   if not f then return -1 end
   local s = f:read("*a")
   f:close()
   local rest = s:match("%)%s+(.*)$")
   local fields = {}
   for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
   -- fields[1] is field 3 (state): utime is field 14, stime 15
   return tonumber(fields[12]) + tonumber(fields[13])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
      "mean_us=%.0f max_us=%d non2xx=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d wrk_ticks=%d\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.mean, latency.max, e.status, e.connect, e.read, e.write, e.timeout, cpu_ticks()))
end

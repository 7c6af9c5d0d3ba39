-- A different bearer token on every request, for `python -m benchmarks.e2e`.
--
--   wrk ... -s benchmarks/fresh_tokens.lua URL TOKENS [START] [THREADS]
--
-- TOKENS is a file of tokens, one a line. Each wrk thread loads all of them and sends
-- them in order, one per request, starting at START + id * (count / THREADS) (THREADS:
-- the -t given to wrk, so that threads start at evenly spaced offsets) and wrapping
-- around at the end. When the run is over, each thread's line on stdout reports how
-- many requests it made and where it started:
--
--   fresh_tokens: thread 0 sent 23817 requests from token 0 of 50000

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if path == nil then
      error("fresh_tokens.lua needs a file of tokens: wrk ... URL TOKENS [START] [THREADS]")
   end
   local start = tonumber(args[2] or "0")
   local nthreads = tonumber(args[3] or "1")
   headers = {}
   for line in io.lines(path) do
      if #line > 0 then
         headers[#headers + 1] = "Bearer " .. line
      end
   end
   count = #headers
   if count == 0 then
      error("no tokens in " .. path)
   end
   first = (start + id * math.floor(count / nthreads)) % count
   position = first
   sent = 0
end

function request()
   -- wrk.format() with no headers argument sends wrk.headers (Host included): this
   -- thread's own table, so changing it here touches no other thread.
   wrk.headers["Authorization"] = headers[position + 1]
   position = (position + 1) % count
   sent = sent + 1
   return wrk.format()
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      io.write(string.format(
         "fresh_tokens: thread %d sent %d requests from token %d of %d\n",
         thread:get("id"), thread:get("sent"), thread:get("first"), thread:get("count")
      ))
   end
end

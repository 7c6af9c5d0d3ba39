-- The request mix of `python -m benchmarks.soak`: the demo API under a steady mixed load.
--
--   wrk -tN -cN --latency -s benchmarks/soak_mix.lua URL CONFIG
--
-- CONFIG is a Lua file that soak.py writes for the run (`return {...}`): the tokens, the
-- passwords, each thread's refresh token, the expected status of every kind of request
-- and the mix (how many slots of each kind in a cycle of 100). It is never committed:
-- its tokens are made for one run.
--
-- Run it with as many threads as connections (-t = -c). wrk's response() callback does
-- not say which request it answers; with one connection per thread, a thread sends its
-- next request only once the previous one is answered, so each answer belongs to the
-- request this thread sent last. That is what lets every answer be checked against
-- what its request expects, and a session (a chain of refresh tokens) be followed.
--
-- Each thread walks its own shuffled cycle of slots, and logs in by the clock: every
-- login_every_ms, its first login login_stagger_ms * id after the start, so that the
-- threads together log in at a steady rate (argon2id is expensive: a share of the
-- requests would let logins take the CPUs whenever the rest runs fast). A login due
-- while the thread's session has never rotated waits for one refresh first. Some
-- answers queue follow-ups, sent next, before the cycle resumes:
--   refresh (200)      -> session_me: GET /me with the new access token (200, its subject)
--   login (200)        -> session_me, then, when the session it replaces had rotated at
--                         least once, alternately (by thread and login):
--                           logout of the old access token (200), revoked_access: GET /me
--                           with it (401), revoked_refresh: the old refresh token (400);
--                         or replayed_refresh: the old session's previous (already used)
--                           refresh token (400, which revokes the family), then
--                           revoked_refresh: its latest one (400);
--                         a step answered otherwise than expected drops the steps after
--                         it (they expect what it should have done)
--   record_write (201) -> record_delete: DELETE /records/{id} of the new record (204)
-- A refresh token is used once, except by replayed_refresh, whose point is a reuse, and
-- after a 503 (the store could not answer: the token is still unused, and a client tries
-- it again). After any other failure, refresh slots send a GET /me instead, until the
-- thread's next login starts a session.
--
-- A request left unanswered (a socket error or timeout, or the server closing the
-- connection without answering, which wrk does not count as an error) is counted in
-- `unanswered`; the thread then drops its session and its pending follow-ups.
--
-- done() prints one line: "soak_mix " followed by a JSON document: per kind the count,
-- unexpected answers, statuses, latency sum/max and a histogram (CONFIG's bucket
-- bounds, in ms); up to 3 unexpected answers per thread; the unanswered requests; wrk's
-- totals, errors and latency percentiles (µs, coordinated-omission corrected as wrk
-- prints them).

local threads = {}
local next_id = 0

local FORM = "application/x-www-form-urlencoded"
local JSON = "application/json"

-- Milliseconds on the monotonic clock (LuaJIT's FFI); nil without it: no latency per kind.
local now = nil
do
   local ok, ffi = pcall(require, "ffi")
   if ok then
      ffi.cdef [[
         typedef struct { long tv_sec; long tv_nsec; } soak_timespec_t;
         int clock_gettime(int clock, soak_timespec_t *now);
      ]]
      local ts = ffi.new("soak_timespec_t")
      now = function()
         ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
         return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
      end
   end
end

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- -- requests ------------------------------------------------------------------------

local function urlencode(text)
   return (text:gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
   end))
end

local function format(r)
   local headers = {}
   if r.token then
      headers["Authorization"] = "Bearer " .. r.token
   end
   if r.ctype then
      headers["Content-Type"] = r.ctype
   end
   return wrk.format(r.method, r.path, headers, r.body)
end

local function refresh_request(kind, token)
   return {
      kind = kind, method = "POST", path = "/token", ctype = FORM,
      body = "grant_type=refresh_token&refresh_token=" .. urlencode(token),
      status = config.expected[kind], used = token,
      expect = kind ~= "refresh" and "invalid_grant" or nil,
   }
end

local function login_request()
   login_turn = login_turn % #config.logins + 1
   local user = config.logins[login_turn]
   return {
      kind = "login", method = "POST", path = "/token", ctype = FORM,
      body = "grant_type=password&username=" .. urlencode(user.username)
         .. "&password=" .. urlencode(user.password),
      status = config.expected.login, subject = user.subject,
   }
end

local function me_request(kind, token, subject)
   return {
      kind = kind, method = "GET", path = "/me", token = token,
      status = config.expected[kind],
      expect = subject and ('"subject":"' .. subject .. '"') or nil,
   }
end

local function push(r)
   queue[#queue + 1] = r
end

function init(args)
   local path = args[1]
   if path == nil then
      error("soak_mix.lua needs its configuration: wrk ... -s soak_mix.lua URL CONFIG")
   end
   config = dofile(path)
   if now == nil then
      error("soak_mix.lua needs LuaJIT's FFI (the login clock, latency per kind)")
   end
   math.randomseed(config.seed + id * 7919)

   -- This thread's cycle: each kind as many times as its weight, shuffled.
   cycle = {}
   for _, weight in ipairs(config.weights) do
      for _ = 1, weight[2] do
         cycle[#cycle + 1] = weight[1]
      end
   end
   for i = #cycle, 2, -1 do
      local j = math.random(i)
      cycle[i], cycle[j] = cycle[j], cycle[i]
   end
   position = math.random(#cycle) - 1

   -- Static requests, formatted once; each kind's templates are taken in turn.
   templates, turns = {}, {}
   for kind, list in pairs(config.templates) do
      templates[kind] = {}
      for _, t in ipairs(list) do
         local r = {}
         for k, v in pairs(t) do
            r[k] = v
         end
         r.kind = kind
         r.status = config.expected[kind]
         r.raw = format(r)
         templates[kind][#templates[kind] + 1] = r
      end
      turns[kind] = (id * 3) % #templates[kind]
   end

   local own = config.chains[id % #config.chains + 1]
   chain = { refresh = own.token, subject = own.subject }
   login_turn = id % #config.logins
   next_login = now() + id * config.login_stagger_ms
   logins, records = 0, 0
   queue = {}
   pending, started, calls = nil, 0, 0

   -- Read by done() through thread:get (see "counting" below).
   bucket_count = #config.buckets_ms + 1
   kinds_seen, statuses_seen, examples, unanswered = "", "", 0, 0

   -- First a static GET /me: on thread 0, wrk calls request() once more than it sends,
   -- to check that the request parses (see `calls` in request()).
   push(templates.me[1])
end

local function next_request()
   if #queue > 0 then
      return table.remove(queue, 1)
   end
   local t = now()
   if t >= next_login then
      if chain ~= nil and chain.previous == nil then
         return refresh_request("refresh", chain.refresh) -- rotate once, then log in
      end
      next_login = next_login + config.login_every_ms
      if next_login < t then
         next_login = t + config.login_every_ms -- behind: skip, never burst
      end
      return login_request()
   end
   position = position % #cycle + 1
   local kind = cycle[position]
   if kind == "refresh" then
      if chain ~= nil then
         return refresh_request("refresh", chain.refresh)
      end
      kind = "me" -- no live session (a refresh failed): the next login starts one
   end
   if kind == "record_write" then
      records = records + 1
      return {
         kind = kind, method = "POST", path = "/records", token = config.author.token,
         ctype = JSON, body = string.format('{"body": "soak thread %d record %d"}', id, records),
         status = config.expected.record_write,
      }
   end
   local list = templates[kind]
   turns[kind] = turns[kind] % #list + 1
   return list[turns[kind]]
end

function request()
   calls = calls + 1
   if id == 0 and calls == 1 then
      -- wrk's own check that the script's request parses: never sent.
      return queue[1].raw
   end
   if pending ~= nil then
      -- The last request got no answer: what it did to the session is unknown.
      unanswered = unanswered + 1
      queue = {}
      chain = nil
   end
   local r = next_request()
   pending = r
   started = now()
   return r.raw or format(r)
end

-- -- counting ------------------------------------------------------------------------
--
-- Counters live in plain global numbers and strings of each thread's Lua state: done()
-- reads them with thread:get, which copies numbers and strings well but crashes wrk on
-- nested tables (wrk 4.1's script_copy_value pops one value too many).
--   n_KIND, u_KIND, s_KIND, m_KIND   answers, unexpected ones, latency sum and max (ms)
--   b_KIND_I                          latency histogram (buckets_ms; the last: beyond)
--   st_KIND_STATUS                    answers by status
--   kinds_seen, statuses_seen         what exists: "KIND ...", "KIND:STATUS ..."
--   ex_1 .. ex_3, examples            unexpected answers, as JSON objects (text)

local encode

local function quote(text)
   return '"' .. text:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end) .. '"'
end

local function number(value)
   if value ~= value or value == math.huge or value == -math.huge then
      return "null"
   end
   if value == math.floor(value) and math.abs(value) < 2 ^ 53 then
      return string.format("%.0f", value)
   end
   return string.format("%.4f", value)
end

encode = function(value)
   local kind = type(value)
   if kind == "number" then
      return number(value)
   elseif kind == "string" then
      return quote(value)
   elseif kind == "boolean" then
      return tostring(value)
   elseif kind == "table" then
      if value.__raw ~= nil then
         return value.__raw -- already JSON
      end
      local parts = {}
      if #value > 0 then
         for _, item in ipairs(value) do
            parts[#parts + 1] = encode(item)
         end
         return "[" .. table.concat(parts, ",") .. "]"
      end
      local keys = {}
      for k in pairs(value) do
         keys[#keys + 1] = tostring(k)
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
         local v = value[k]
         if v == nil then
            v = value[tonumber(k)]
         end
         parts[#parts + 1] = quote(k) .. ":" .. encode(v)
      end
      return "{" .. table.concat(parts, ",") .. "}"
   end
   return "null"
end

local counters = {}

local function counters_of(kind)
   local c = counters[kind]
   if c == nil then
      c = {
         count = "n_" .. kind, unexpected = "u_" .. kind, sum = "s_" .. kind, max = "m_" .. kind,
         buckets = {}, statuses = {},
      }
      _G[c.count], _G[c.unexpected], _G[c.sum], _G[c.max] = 0, 0, 0, 0
      for i = 1, bucket_count do
         c.buckets[i] = "b_" .. kind .. "_" .. i
         _G[c.buckets[i]] = 0
      end
      kinds_seen = kinds_seen .. kind .. " "
      counters[kind] = c
   end
   return c
end

local function record(r, status, ok, body)
   local c = counters_of(r.kind)
   _G[c.count] = _G[c.count] + 1
   local name = c.statuses[status]
   if name == nil then
      name = "st_" .. r.kind .. "_" .. status
      c.statuses[status] = name
      _G[name] = 0
      statuses_seen = statuses_seen .. r.kind .. ":" .. status .. " "
   end
   _G[name] = _G[name] + 1
   if not ok then
      _G[c.unexpected] = _G[c.unexpected] + 1
      if examples < 3 then
         examples = examples + 1
         _G["ex_" .. examples] = encode({
            kind = r.kind, status = status, expected = r.status,
            path = r.method .. " " .. r.path, body = body:sub(1, 300),
         })
      end
   end
   do
      local ms = now() - started
      _G[c.sum] = _G[c.sum] + ms
      if ms > _G[c.max] then
         _G[c.max] = ms
      end
      local bucket = bucket_count
      for i, bound in ipairs(config.buckets_ms) do
         if ms <= bound then
            bucket = i
            break
         end
      end
      _G[c.buckets[bucket]] = _G[c.buckets[bucket]] + 1
   end
end

local function tokens_in(body)
   local access = body:match('"access_token"%s*:%s*"([^"]+)"')
   local refresh = body:match('"refresh_token"%s*:%s*"([^"]+)"')
   if access == nil or refresh == nil then
      return nil
   end
   return { access = access, refresh = refresh }
end

local function start_session(r, got)
   local old = chain
   chain = { refresh = got.refresh, access = got.access, subject = r.subject }
   logins = logins + 1
   push(me_request("session_me", got.access, r.subject))
   if old == nil or old.access == nil or old.previous == nil then
      return -- the old session never rotated: nothing of it to log out or replay
   end
   -- Each step expects what the previous one did: one that fails drops the rest.
   local steps
   if (id + logins) % 2 == 1 then
      steps = {
         {
            kind = "logout", method = "POST", path = "/logout", token = old.access,
            ctype = FORM, body = "refresh_token=" .. urlencode(old.refresh),
            status = config.expected.logout,
         },
         me_request("revoked_access", old.access, nil),
         refresh_request("revoked_refresh", old.refresh),
      }
   else
      steps = {
         refresh_request("replayed_refresh", old.previous),
         refresh_request("revoked_refresh", old.refresh),
      }
   end
   for _, step in ipairs(steps) do
      step.group = logins
      push(step)
   end
end

function response(status, headers, body)
   local r = pending
   pending = nil
   if r == nil then
      return
   end
   local ok = status == r.status
   if ok and r.expect ~= nil and body:find(r.expect, 1, true) == nil then
      ok = false
   end
   local got = nil
   if ok and (r.kind == "login" or r.kind == "refresh") then
      got = tokens_in(body)
      ok = got ~= nil
   elseif ok and r.kind == "logout" then
      ok = body:find('"revoked"%s*:%s*true') ~= nil
   end
   local created = nil
   if ok and r.kind == "record_write" then
      created = body:match('"id"%s*:%s*(%d+)')
      ok = created ~= nil
   end
   record(r, status, ok, body)
   if not ok and r.group ~= nil then
      local rest = {}
      for _, next_ in ipairs(queue) do
         if next_.group ~= r.group then
            rest[#rest + 1] = next_
         end
      end
      queue = rest
   end

   if r.kind == "login" then
      if ok then
         start_session(r, got)
      end
   elseif r.kind == "refresh" then
      if ok and chain ~= nil and chain.refresh == r.used then
         chain.previous = chain.refresh
         chain.refresh = got.refresh
         chain.access = got.access
         push(me_request("session_me", got.access, chain.subject))
      elseif status ~= 503 then
         chain = nil -- refused or unreadable: the session ends with the thread's next login
      end -- a 503 (an error all the same) leaves the token unused: a client tries again
   elseif created ~= nil then
      push({
         kind = "record_delete", method = "DELETE", path = "/records/" .. created,
         token = config.author.token, status = config.expected.record_delete,
      })
   end
end

-- -- the summary ---------------------------------------------------------------------

local function raw(text)
   return { __raw = text }
end

function done(summary, latency, requests)
   local kinds, examples_, lost = {}, {}, 0
   for _, thread in ipairs(threads) do
      local get = function(name)
         return thread:get(name)
      end
      lost = lost + (get("unanswered") or 0)
      for i = 1, get("examples") or 0 do
         examples_[#examples_ + 1] = raw(get("ex_" .. i))
      end
      local buckets = get("bucket_count") or 0
      for kind in (get("kinds_seen") or ""):gmatch("%S+") do
         local total = kinds[kind]
         if total == nil then
            total = { count = 0, unexpected = 0, statuses = {}, ms_sum = 0, ms_max = 0, buckets = {} }
            for i = 1, buckets do
               total.buckets[i] = 0
            end
            kinds[kind] = total
         end
         total.count = total.count + get("n_" .. kind)
         total.unexpected = total.unexpected + get("u_" .. kind)
         total.ms_sum = total.ms_sum + get("s_" .. kind)
         total.ms_max = math.max(total.ms_max, get("m_" .. kind))
         for i = 1, buckets do
            total.buckets[i] = total.buckets[i] + get("b_" .. kind .. "_" .. i)
         end
      end
      for pair in (get("statuses_seen") or ""):gmatch("%S+") do
         local kind, status = pair:match("^(.+):(%d+)$")
         local statuses = kinds[kind].statuses
         statuses[status] = (statuses[status] or 0) + get("st_" .. kind .. "_" .. status)
      end
   end
   local document = {
      threads = #threads,
      per_kind_latency = now ~= nil,
      kinds = kinds,
      unexpected_examples = examples_,
      unanswered = lost,
      wrk = {
         requests = summary.requests,
         duration_us = summary.duration,
         bytes = summary.bytes,
         errors = summary.errors,
      },
      latency_us = {
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
         p999 = latency:percentile(99.9),
         max = latency.max,
         mean = latency.mean,
      },
   }
   io.write("soak_mix " .. encode(document) .. "\n")
end

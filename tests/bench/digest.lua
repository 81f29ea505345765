-- wrk script for requests through the Aggregation Proxy with HTTP Digest (RFC 7616, MD5,
-- qop=auth), done the way a real client does it: one 401 handshake for a nonce, then the nonce
-- is reused with nc incremented and a fresh response computed for every request.
--
--   wrk ... -s digest.lua URL -- METHOD USERNAME PASSWORD [BODY-FILE CONTENT-TYPE]
--
-- The proxy accepts an nc only when it is greater than the last one accepted for that nonce, so a
-- nonce must not be in flight on two connections at once (they could arrive out of order). wrk
-- does not say which connection a request goes to, so each thread keeps a pool of nonces and
-- marks one busy while a request carrying it is outstanding. The response names the request by
-- the cnonce echoed in Authentication-Info (RFC 7616 §3.5), which frees the nonce again. A request
-- that finds no free nonce goes without credentials; its 401 brings a new nonce into the pool
-- (this happens only while the pool warms up to one nonce per connection). If the proxy echoes no
-- cnonce, the script falls back to round-robin over a pool of 8 nonces per connection.
--
-- With BENCH_FAKE_NONCES=1 the pool starts full of made-up nonces: pointed at the ceiling server
-- (which ignores credentials) this measures what the script itself costs the load generator.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local md5 = require("md5")

local method, username, password, body, ctype, path
local pool = {}        -- { nonce=, opaque=, realm=, nc=, busy= }
local by_cnonce = {}   -- cnonce -> pool entry
local cursor = 0
local serial = 0
local tracking = true  -- false once a 2xx came without an echoed cnonce
local conns_per_thread = 1

function init(args)
   method = args[1] or "GET"
   username = args[2]
   password = args[3]
   if args[4] then
      local f = assert(io.open(args[4], "rb"))
      body = f:read("*a")
      f:close()
      ctype = args[5]
   end
   path = wrk.path
   conns_per_thread = tonumber(os.getenv("BENCH_CONNS_PER_THREAD") or "16")
   if os.getenv("BENCH_FAKE_NONCES") == "1" then
      tracking = false
      for i = 1, 8 * conns_per_thread do
         pool[i] = { nonce = "fake" .. i, realm = "example.com", nc = 0, busy = false }
      end
   end
end

local function param(s, name)
   return s:match(name .. '="([^"]*)"') or s:match(name .. "=([^,%s]*)")
end

local function add_challenge(value)
   -- Several challenges may share one header line; take the one with algorithm=MD5.
   local chal
   local i = 1
   while true do
      local a = value:find("Digest ", i, true)
      if not a then
         break
      end
      local b = value:find("Digest ", a + 7, true)
      local c = value:sub(a + 7, (b or #value + 1) - 1)
      if (param(c, "algorithm") or "MD5"):upper() == "MD5" then
         chal = c
      end
      if not b then
         break
      end
      i = b
   end
   if not chal then
      return
   end
   local e = { nonce = param(chal, "nonce"), opaque = param(chal, "opaque"),
               realm = param(chal, "realm"), nc = 0, busy = false }
   if e.nonce then
      pool[#pool + 1] = e
   end
end

local function pick()
   local n = #pool
   if n == 0 then
      return nil
   end
   if not tracking then
      if n < 8 * conns_per_thread then
         return nil -- keep growing the round-robin pool
      end
      cursor = cursor % n + 1
      return pool[cursor]
   end
   for _ = 1, n do
      cursor = cursor % n + 1
      if not pool[cursor].busy then
         return pool[cursor]
      end
   end
   return nil
end

function request()
   local headers = {}
   if ctype then
      headers["Content-Type"] = ctype
   end
   local e = pick()
   if e then
      e.nc = e.nc + 1
      e.busy = true
      serial = serial + 1
      local cnonce = string.format("%x%x", math.random(0, 0x7fffffff), serial)
      local nc = string.format("%08x", e.nc)
      local ha1 = md5(username .. ":" .. e.realm .. ":" .. password)
      local ha2 = md5(method .. ":" .. path)
      local resp = md5(ha1 .. ":" .. e.nonce .. ":" .. nc .. ":" .. cnonce .. ":auth:" .. ha2)
      local h = string.format('Digest username="%s", realm="%s", nonce="%s", uri="%s", ' ..
                              'algorithm=MD5, qop=auth, nc=%s, cnonce="%s", response="%s"',
                              username, e.realm, e.nonce, path, nc, cnonce, resp)
      if e.opaque then
         h = h .. string.format(', opaque="%s"', e.opaque)
      end
      headers["Authorization"] = h
      by_cnonce[cnonce] = e
   end
   return wrk.format(method, path, headers, body)
end

function response(status, headers, resp_body)
   local info, chal
   for k, v in pairs(headers) do
      local lk = k:lower()
      if lk == "authentication-info" then
         info = v
      elseif lk == "www-authenticate" then
         chal = v
      end
   end
   local cn = info and param(info, "cnonce")
   if cn and by_cnonce[cn] then
      by_cnonce[cn].busy = false
      by_cnonce[cn] = nil
   elseif status >= 200 and status < 300 and tracking then
      tracking = false
      for _, e in ipairs(pool) do
         e.busy = false
      end
      by_cnonce = {}
   end
   if status == 401 and chal then
      add_challenge(chal)
   end
end

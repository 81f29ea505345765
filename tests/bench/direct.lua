-- wrk script for requests straight to an XDMS. An XDMS trusts its loopback peer as the proxy and
-- takes the user from X-3GPP-Asserted-Identity, so no authentication round trips are involved.
--
--   wrk ... -s direct.lua URL -- METHOD IDENTITY [BODY-FILE CONTENT-TYPE]
--
-- The request is built once per thread (a static request, the cheapest wrk mode).
function init(args)
   wrk.method = args[1] or "GET"
   if args[2] then
      wrk.headers["X-3GPP-Asserted-Identity"] = '"' .. args[2] .. '"'
   end
   if args[3] then
      local f = assert(io.open(args[3], "rb"))
      wrk.body = f:read("*a")
      f:close()
      wrk.headers["Content-Type"] = args[4]
   end
end

-- wrk script for plain requests to a TCP server (tools/bench's ceiling-px: the ceiling server
-- with the proxy's thread count). An XDMS believes X-3GPP-Asserted-Identity only on its
-- UNIX-domain socket, which wrk cannot reach; the XDMS scenarios use tests/bench/uload instead.
--
--   wrk ... -s direct.lua URL -- METHOD [IDENTITY [BODY-FILE CONTENT-TYPE]]
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

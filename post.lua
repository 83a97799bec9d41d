wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("/tmp/prof/body1.json", "rb"))
wrk.body = f:read("*a")
f:close()

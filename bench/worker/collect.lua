-- wrk script: POST /collect with a unique order id per request (args: a run id).
local n = 0
local headers = {
  ["Content-Type"] = "application/json",
  ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
}
function init(args)
  run = args[1] or "run"
end
function request()
  n = n + 1
  local body = string.format(
    '{"conversion_type":"Purchase","order_id":"%s-%s-%d","value":"19.99","currency":"usd","email":"Bench.User%d@Example.com","phone":"+1 (415) 555-%04d"}',
    run, tostring(tid or 0), n, n, n % 10000)
  return wrk.format("POST", "/collect", headers, body)
end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

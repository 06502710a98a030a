-- POST /api/checkout with a unique order_id per request.
-- wrk ... -s checkout.lua URL -- PREFIX
-- PREFIX keeps order ids unique across runs. With CAPI_BENCH_MAX=N in the environment the thread
-- stops once N responses arrived (use -t1; wrk only calls response() if it exists at load time).
-- For splitting the filter's cost: CAPI_BENCH_SAME_ORDER=1 sends one order id over and over
-- (extracted every time, then dropped by the dedup window: no delivery), CAPI_BENCH_GPC=1 adds
-- Sec-GPC: 1 (matched, then skipped for consent: no body work).
local prefix, seq, seen = "x", 0, 0
local max = tonumber(os.getenv("CAPI_BENCH_MAX") or "")
local same_order = os.getenv("CAPI_BENCH_SAME_ORDER") == "1"
local headers = {
  ["content-type"] = "application/json",
  ["user-agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
  ["cookie"] = "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9; theme=dark",
}
if os.getenv("CAPI_BENCH_GPC") == "1" then headers["sec-gpc"] = "1" end
-- CAPI_BENCH_DELAY_MS=N: a pause of N ms before each request (paced traffic: every checkout
-- meets an idle worker, so its latency is its own).
local delay_ms = tonumber(os.getenv("CAPI_BENCH_DELAY_MS") or "")
if delay_ms then
  function delay() return delay_ms end
end

function init(args)
  prefix = args[1] or "x"
end

if max then
  function response(status, hdrs, body)
    seen = seen + 1
    if seen >= max then wrk.thread:stop() end
  end
end

function request()
  if not same_order then seq = seq + 1 end
  local body = '{"email":"jane.doe@example.com","phone":"+1 415 555 2671","total":"49.90","order_id":"'
    .. prefix .. "-" .. seq .. '"}'
  return wrk.format("POST", "/api/checkout", headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

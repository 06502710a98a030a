-- wrk script: POST /bench/checkout through the Worker to the origin (a matching rule: the
-- origin answers with a new order id each time, so every request makes one conversion).
local headers = {
  ["Content-Type"] = "application/json",
  ["Cookie"] = "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9",
  ["User-Agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
}
local body = '{"cart":[{"sku":"A-1","qty":2}]}'
function request()
  return wrk.format("POST", "/bench/checkout", headers, body)
end

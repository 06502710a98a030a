-- wrk script: GET a page that matches no rule (the Worker only forwards it).
local headers = { ["Cookie"] = "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9", ["Accept"] = "text/html" }
function request()
  return wrk.format("GET", "/products/42", headers)
end

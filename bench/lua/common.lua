-- Shared by the wrk scripts: random entity ids and points, seeded per thread.
local M = {}
M.n = tonumber(os.getenv("BENCH_N") or "100000")
M.link = '<https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
function M.id()
  return "urn:ngsi-ld:AirQualityObserved:bench-" .. math.random(0, M.n - 1)
end
function M.point()
  return 30.5234 + (math.random() - 0.5) * 0.4230, 50.4501 + (math.random() - 0.5) * 0.2698
end
return M

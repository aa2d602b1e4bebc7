package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function() math.randomseed(seed * 15485863) end
request = function()
  local lon, lat = c.point()
  local path = string.format(
    "/ngsi-ld/v1/entities?type=AirQualityObserved&q=pm25%%3E10&georel=near;maxDistance==2000&geometry=Point&coordinates=%%5B%.5f,%.5f%%5D&limit=20",
    lon, lat)
  return wrk.format("GET", path, { ["Link"] = c.link })
end

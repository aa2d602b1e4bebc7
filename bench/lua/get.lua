package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function() math.randomseed(seed * 7919) end
request = function()
  return wrk.format("GET", "/ngsi-ld/v1/entities/" .. c.id(), { ["Link"] = c.link })
end

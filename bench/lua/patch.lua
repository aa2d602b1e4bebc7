package.path = package.path .. ";" .. (os.getenv("BENCH_LUA") or "bench/lua") .. "/?.lua"
local c = require("common")
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function() math.randomseed(seed * 104729) end
request = function()
  local body = string.format('{"value": %.1f}', math.random() * 40)
  return wrk.format("PATCH", "/ngsi-ld/v1/entities/" .. c.id() .. "/attrs/pm25",
    { ["Content-Type"] = "application/json", ["Link"] = c.link }, body)
end

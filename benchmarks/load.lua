-- wrk script of the load benchmarks (benchmarks/wrk.py writes the files it reads):
--   wrk ... -s load.lua URL -- recommendations USERS_FILE   GET /users/{id}/recommendations?k=10,
--                                                           id drawn from the file (a known id a line)
--   wrk ... -s load.lua URL -- predict BODIES_FILE          POST /predict, a body drawn from the file
-- At the end it prints one line `WRK_JSON {...}`: exact latency percentiles (microseconds), the
-- request count, the socket errors, and the number of responses whose status was not 2xx.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  prepared, non2xx = {}, 0
  for line in io.lines(args[2]) do
    if args[1] == "recommendations" then
      prepared[#prepared + 1] = wrk.format("GET", "/users/" .. line .. "/recommendations?k=10")
    else
      prepared[#prepared + 1] = wrk.format("POST", "/predict", { ["Content-Type"] = "application/json" }, line)
    end
  end
  math.randomseed(1000 + id)
end

function request()
  return prepared[math.random(#prepared)]
end

function response(status)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency)
  local not_2xx, e = 0, summary.errors
  for _, thread in ipairs(threads) do not_2xx = not_2xx + thread:get("non2xx") end
  io.write(string.format('WRK_JSON {"duration_us": %d, "requests": %d, "non_2xx": %d, "errors": {"connect": %d, '
    .. '"read": %d, "write": %d, "timeout": %d}, "latency_us": {"p50": %d, "p95": %d, "p99": %d}}\n',
    summary.duration, summary.requests, not_2xx, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end

-- wrk script of the load benchmarks (benchmarks/wrk.py writes the files it reads):
--   wrk ... -s load.lua URL -- recommendations USERS_FILE   GET /users/{id}/recommendations?k=10,
--                                                           id drawn from the file (a known id a line)
--   wrk ... -s load.lua URL -- predict BODIES_FILE          POST /predict, a body drawn from the file
--   wrk ... -s load.lua URL -- ratings WRITES_FILE          PUT /users/{id}/ratings/{movie} {"rating": s},
--                                                           from lines `user movie stars`
-- At the end it prints one line `WRK_JSON {...}`: exact latency percentiles (microseconds), the
-- request count and wrk's errors (socket errors, and `status`: responses with a status of 400 or more).

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  prepared = {}
  for line in io.lines(args[2]) do
    if args[1] == "recommendations" then
      prepared[#prepared + 1] = wrk.format("GET", "/users/" .. line .. "/recommendations?k=10")
    elseif args[1] == "ratings" then
      local user, movie, stars = line:match("(%d+) (%d+) ([%d.]+)")
      prepared[#prepared + 1] = wrk.format("PUT", "/users/" .. user .. "/ratings/" .. movie,
        { ["Content-Type"] = "application/json" }, '{"rating": ' .. stars .. '}')
    else
      prepared[#prepared + 1] = wrk.format("POST", "/predict", { ["Content-Type"] = "application/json" }, line)
    end
  end
  math.randomseed(1000 + id)
end

function request()
  return prepared[math.random(#prepared)]
end

function done(summary, latency)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"duration_us": %d, "requests": %d, "errors": {"connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p95": %d, "p99": %d}}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end

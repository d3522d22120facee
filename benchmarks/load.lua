-- wrk script for the load benchmark (benchmarks/load.py writes the files it reads).
--
--   wrk ... -s load.lua URL -- recommendations USERS_FILE [K]
--       GET /users/{id}/recommendations?k=K, id drawn at random from USERS_FILE (one known id a line)
--   wrk ... -s load.lua URL -- predict BODIES_FILE
--       POST /predict, body drawn at random from BODIES_FILE (one JSON body a line)
--
-- At the end it prints one line `WRK_JSON {...}`: exact latency percentiles (microseconds), the
-- request count, the socket errors, and the number of responses whose status was not 2xx.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  local mode, path = args[1], args[2]
  local k = args[3] or "10"
  prepared = {}
  non2xx = 0
  for line in io.lines(path) do
    if line ~= "" then
      if mode == "recommendations" then
        prepared[#prepared + 1] = wrk.format("GET", "/users/" .. line .. "/recommendations?k=" .. k)
      elseif mode == "predict" then
        prepared[#prepared + 1] =
          wrk.format("POST", "/predict", { ["Content-Type"] = "application/json" }, line)
      else
        error("unknown mode " .. tostring(mode) .. ": use recommendations or predict")
      end
    end
  end
  if #prepared == 0 then
    error("no requests could be built from " .. tostring(path))
  end
  math.randomseed(1000 + thread_number)
end

function request()
  return prepared[math.random(#prepared)]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local not_2xx = 0
  for _, thread in ipairs(threads) do
    not_2xx = not_2xx + (thread:get("non2xx") or 0)
  end
  local errors = summary.errors
  local fields = {
    string.format('"duration_us": %d', summary.duration),
    string.format('"requests": %d', summary.requests),
    string.format('"bytes": %d', summary.bytes),
    string.format('"non_2xx": %d', not_2xx),
    string.format(
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
      errors.connect, errors.read, errors.write, errors.status, errors.timeout
    ),
    string.format('"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, '
      .. '"p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}',
      latency.min, latency.mean, latency.stdev, latency.max, latency:percentile(50),
      latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9)),
  }
  io.write("WRK_JSON {" .. table.concat(fields, ", ") .. "}\n")
end

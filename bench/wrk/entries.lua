-- wrk script for POST /v1/courier/entries: request n of a run uses delivery n and its
-- package, and is made by courier n % (number of tokens) with that courier's bearer token
-- (bench/seed.py seeds them; the body format comes from there too). With several wrk
-- threads, thread t sends n = first + t, first + t + threads, ...
-- args: path, body format (printf, takes n twice), tokens file (one a line), first, threads

local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  path = args[1]
  body_format = args[2]
  stride = tonumber(args[5])
  n = tonumber(args[4]) + thread_index
  tokens = {}
  for line in io.lines(args[3]) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  wrk.method = "POST"
  headers = {["Content-Type"] = "application/json"}
end

function request()
  local body = string.format(body_format, n, n)
  headers["Authorization"] = tokens[(n % #tokens) + 1]
  n = n + stride
  return wrk.format(nil, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end

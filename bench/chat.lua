-- wrk script: POST a JSON body (chat completions, or another route's), count non-2xx answers and
-- the answers completed in each wall-clock second, and print the latency distribution as one JSON
-- line so the bench can merge interleaved runs.
--
-- Environment: BENCH_BODY_FILE (request body), BENCH_AUTH (optional bearer key), BENCH_HEADERS
-- (optional extra headers, one "Name: value" a line, e.g. x-api-key and anthropic-version).

local body_file = os.getenv("BENCH_BODY_FILE")
local auth = os.getenv("BENCH_AUTH")
local extra_headers = os.getenv("BENCH_HEADERS")

local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
if extra_headers and extra_headers ~= "" then
  for line in extra_headers:gmatch("[^\n]+") do
    local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if name then wrk.headers[name] = value end
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  statuses = {}
  started = os.time()
  per_second = {}
end

function response(status, headers, body)
  local now = os.time()
  per_second[now] = (per_second[now] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  local status_parts = {}
  local merged = {}
  local seconds = {}
  local started_min = nil
  for _, thread in ipairs(threads) do
    local t0 = thread:get("started")
    if t0 and (not started_min or t0 < started_min) then started_min = t0 end
    for second, count in pairs(thread:get("per_second") or {}) do
      seconds[second] = (seconds[second] or 0) + count
    end
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
    local st = thread:get("statuses") or {}
    for code, count in pairs(st) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  for code, count in pairs(merged) do
    table.insert(status_parts, string.format('"%d":%d', code, count))
  end
  local second_parts = {}
  for second, count in pairs(seconds) do
    table.insert(second_parts, string.format('"%d":%d', second, count))
  end
  -- wrk's Lua API exposes percentiles, not raw buckets: 1 000 evenly spaced quantiles let the
  -- bench merge interleaved runs (each quantile weighs requests / 1 000).
  local hist = {}
  for i = 1, 1000 do
    table.insert(hist, string.format("%d", latency:percentile((i - 0.5) / 10)))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"max_us":%d,' ..
    '"started_s":%d,"per_second":{%s},"quantiles_us":[%s]}\n',
    summary.requests, summary.duration, non2xx_total, table.concat(status_parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout, latency.max, started_min or 0,
    table.concat(second_parts, ","), table.concat(hist, ",")))
end

-- wrk script for bench/http_load.py: POST one chat message per request, each request in a
-- session of its own header (X-Hermes-Session), rotating over BENCH_SESSIONS sessions so that
-- requests in flight at once never share one. Counts replies hermes-core marks as failed and
-- prints the summary as one JSON line.
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or "s"
local path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
local body = '{"model": "ok-bench", "messages": [{"role": "user", "content": "hello"}]}'
local counter = 0
local threads = {}
-- A global, not a local: done() runs in another Lua state and reads it with thread:get().
failed = 0

setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Hermes-Session"] = prefix .. "-" .. (counter % sessions),
  }
  return wrk.format("POST", path, headers, body)
end

response = function(status, headers, _)
  if headers["x-hermes-error-kind"] or headers["X-Hermes-Error-Kind"] then
    failed = failed + 1
  end
end

done = function(summary, latency, _)
  local errors = summary.errors
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failed")
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "failed": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write + errors.status + errors.timeout, failed))
end

-- wrk script: cycles through the tokens in $TOKENS (one per line) from offset $START, sending
-- `Authorization: Bearer <token>` to $BENCH_PATH (default /api/protected). With $ORIGINAL_URI set, requests also
-- carry X-Original-Method/X-Original-URI, as nginx auth_request sends them to a forward-auth endpoint.
local requests = {}
local i = 0

function init(args)
  local path = os.getenv("BENCH_PATH") or "/api/protected"
  local original = os.getenv("ORIGINAL_URI")
  for token in io.lines(os.getenv("TOKENS")) do
    if #token > 0 then
      local headers = { ["Authorization"] = "Bearer " .. token }
      if original then
        headers["X-Original-Method"] = "GET"
        headers["X-Original-URI"] = original
      end
      requests[#requests + 1] = wrk.format("GET", path, headers)
    end
  end
  -- $START: where in the set this run begins (bench/run.sh gives every round its own slice).
  i = tonumber(os.getenv("START") or "0") % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end

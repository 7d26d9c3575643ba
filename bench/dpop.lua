-- wrk script for bench/dpop.sh: `GET $BENCH_PATH` with the token in $TOKEN_FILE, as Bearer, or, with $PROOFS set,
-- as `Authorization: DPoP <token>` plus one proof per request from that file (one per line), in order. A proof
-- is never sent twice: when the file runs out the script sends no proof (the server refuses it, and the run's
-- non-2xx count shows it).
local token
local proofs = {}
local i = 0
local path

function init(args)
  path = os.getenv("BENCH_PATH") or "/api/protected"
  for line in io.lines(os.getenv("TOKEN_FILE")) do
    if #line > 0 then token = line end
  end
  local file = os.getenv("PROOFS")
  if file then
    for line in io.lines(file) do
      if #line > 0 then proofs[#proofs + 1] = line end
    end
  end
  i = 0
end

function request()
  if #proofs == 0 then
    return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
  end
  i = i + 1
  local headers = { ["Authorization"] = "DPoP " .. token }
  if i <= #proofs then headers["DPoP"] = proofs[i] end
  return wrk.format("GET", path, headers)
end

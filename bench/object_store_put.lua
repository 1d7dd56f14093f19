-- wrk script: 4 KiB PUTs from every connection at once.
-- Invoked as: wrk ... -s object_store_put.lua URL -- TOKEN PATH [NAMES]
-- Names are t<thread>-o<n>: each PUT a new object, or, with NAMES, n cycling through
-- 1..NAMES so that every PUT after the first round overwrites an object (in a versioned
-- container each overwrite keeps the old version).  At the end it prints the smallest
-- per-thread count, so the GET script can read back objects that exist on every thread's side.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  token, path, names = args[1], args[2], tonumber(args[3] or "0")
  body = string.rep("x", 4096)
  count = 0
end

function request()
  count = count + 1
  local n = count
  if names > 0 then n = (count - 1) % names + 1 end
  return wrk.format("PUT", path .. "/t" .. tid .. "-o" .. n,
                    {["X-Auth-Token"] = token, ["Content-Type"] = "application/octet-stream"}, body)
end

function done(summary, latency, requests)
  local least = nil
  for _, thread in ipairs(threads) do
    local n = thread:get("count")
    if least == nil or n < least then least = n end
  end
  io.write(string.format("objects_per_thread %d\n", least or 0))
end

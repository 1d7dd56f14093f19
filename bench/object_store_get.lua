-- wrk script: GETs of the objects object_store_put.lua wrote, cycling through them.
-- Invoked as: wrk ... -s object_store_get.lua URL -- TOKEN PATH OBJECTS_PER_THREAD
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

function init(args)
  token, path, objects = args[1], args[2], tonumber(args[3])
  count = 0
end

function request()
  -- names 2..objects: wrk calls the PUT script's request() once before the run (to
  -- see whether requests vary), so o1 was named but never sent
  count = count % (objects - 1) + 1
  return wrk.format("GET", path .. "/t" .. tid .. "-o" .. (count + 1), {["X-Auth-Token"] = token})
end

function response(status, headers, body)
  if status >= 300 and not reported then
    reported = true
    io.stderr:write(string.format("first failure: HTTP %d after %d requests on thread %d\n", status, count, tid))
  end
end

-- Sends DEPTH requests (16 unless given after `--`) in one write on each connection, and the next
-- batch once all of their answers are in (wrk counts each response).
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, "/hello")
   end
   req = table.concat(r)
end

request = function()
   return req
end

-- Sends 16 requests in one write on each connection (wrk counts each response).
init = function(args)
   local r = {}
   for i = 1, 16 do
      r[i] = wrk.format(nil, "/hello")
   end
   req = table.concat(r)
end

request = function()
   return req
end

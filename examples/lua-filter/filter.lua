-- Count the HTTP status codes of an access log (common log format) on stdin:
-- a ZeroCloud job in Lua.
--
--   lua filter.lua [MIN_STATUS]
--
-- Prints "status count" lines, sorted by status, for statuses >= MIN_STATUS
-- (default 0), then the number of lines that did not parse.
local min = tonumber(arg[1] or "0")
local counts, bad = {}, 0
for line in io.lines() do
  local status = line:match('^%S+ %S+ %S+ %[[^%]]*%] "[^"]*" (%d%d%d) ')
  if status then
    status = tonumber(status)
    if status >= min then counts[status] = (counts[status] or 0) + 1 end
  else
    bad = bad + 1
  end
end
local statuses = {}
for status in pairs(counts) do statuses[#statuses + 1] = status end
table.sort(statuses)
for _, status in ipairs(statuses) do print(status, counts[status]) end
print("unparsed", bad)

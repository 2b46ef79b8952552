-- Split a list into slices small enough for unpack() (Lua's C stack holds ~8000 values),
-- so one command can take many ids at once.
local function chunks(items, size)
  local out = {}
  for i = 1, #items, size do
    out[#out + 1] = {unpack(items, i, math.min(i + size - 1, #items))}
  end
  return out
end

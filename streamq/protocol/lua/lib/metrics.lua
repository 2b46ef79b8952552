-- Fleet metrics kept in Redis so one scrape of the web app sees every worker:
-- per-minute counters (Redis clock) and per-bucket histogram counts.
local function minute_of(ms)
  return tostring(math.floor(ms / 60000))
end

-- Lateness/duration bucket label for `ms`, from the bounds in streamq.protocol.keys.BUCKETS_MS.
local BUCKETS = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}
local function bucket_of(ms)
  for _, le in ipairs(BUCKETS) do
    if ms <= le then return tostring(le) end
  end
  return 'inf'
end

-- Argo CD health check for dbproxy.io/DatabaseProxy (install: docs/argocd.md).
-- Reads what the operator writes (operator/status/status.ts): status.observedGeneration and the
-- Ready and Degraded conditions. Argo CD runs custom health checks without Lua's string library,
-- so this script uses only base functions and the .. operator.
local hs = {}

-- Ready=False reasons that mean the proxy is failing or cannot become ready without someone
-- acting. The operator also sets Degraded=True for all but StatsUnavailable; that one appears
-- with Degraded=False when no ready pod answers /stats at all (e.g. a NetworkPolicy between the
-- operator and the proxy pods), which is at least as broken as some pods not answering.
local failed = {
  UnsupportedSpec = true,               -- the spec asks for something the proxy cannot do; nothing rolled out
  ProgressDeadlineExceeded = true,      -- the Deployment rollout is stuck
  TargetUnreachable = true,             -- no proxy pod has a writer: the database is down, refuses the login, ...
  TargetUnreachableFromSomePods = true, -- some pods have no writer: clients routed there fail
  ReplicasUnavailable = true,           -- a pod failing (crash loop, restarts), or pods unavailable past the progress deadline
  PoolBudgetTooSmall = true,            -- max_connections x maxConnectionsPercent is below the number of pods
  AwsIdentityFailed = true,             -- the pods' AWS identity (IRSA) is missing or wrong: IAM logins to the database fail
  StatsUnavailable = true,              -- ready pods do not answer /stats
  ReadersUnavailable = true,            -- spec.readers.enabled, no standby in rotation, no fallbackToWriter (Degraded only: Ready stays about the main endpoint)
}

local function condition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function messageOf(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the dbproxy operator to report status"
  return hs
end

-- A status computed for an older spec says nothing about the current one.
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the dbproxy operator to observe generation " .. generation
  else
    hs.message = "Waiting for the dbproxy operator to observe the spec"
  end
  return hs
end

local ready = condition(status.conditions, "Ready")
local degraded = condition(status.conditions, "Degraded")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  if ready ~= nil and ready.status == "True" then
    -- The main endpoint serves (Ready), yet something else the user asked for does not (the
    -- read-only endpoint without a standby): Degraded names it, Ready would not.
    hs.message = messageOf(degraded, degraded.reason)
  else
    hs.message = messageOf(ready, messageOf(degraded, degraded.reason))
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = messageOf(ready, "Ready")
  return hs
end

-- Every proxy pod paused (spec.paused, or PAUSE on each pod's admin console): held on purpose.
-- Pausing and Resuming (pods still picking up spec.paused) fall through to Progressing.
if ready ~= nil and ready.status == "False" and ready.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = messageOf(ready, "Paused")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason ~= nil and failed[ready.reason] then
  hs.status = "Degraded"
  hs.message = messageOf(ready, ready.reason)
  return hs
end

-- Not ready yet and nothing has failed: creating, rolling out, scaling, waiting for pods or for
-- their first /stats. A rollout that never finishes ends as ProgressDeadlineExceeded above.
hs.status = "Progressing"
hs.message = messageOf(ready, "Waiting for the Ready condition")
return hs

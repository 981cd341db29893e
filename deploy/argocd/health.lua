-- Argo CD health of a claimcheck.dev/PayloadStoragePolicy.
--
-- The policy's status follows kstatus: observedGeneration, and the conditions Ready,
-- Reconciling, Stalled, StorageVerified and LifecycleConfigured, each with a reason and a
-- message (src/controller/evaluate.rs). Without this check Argo CD would count every policy
-- Healthy, including one whose store fails the controller's round-trip probe.
--
-- Argo CD runs this with gopher-lua (Lua 5.1) and only the base, table and os libraries:
-- no string or math functions, no string methods.
local hs = {}

local function condition(conditions, wanted)
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the claimcheck controller to observe the policy"
  return hs
end

-- Conditions written for an older spec say nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the claimcheck controller to observe generation " .. generation
  return hs
end

local conditions = status.conditions or {}
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")
local ready = condition(conditions, "Ready")

-- Stalled: only an edit of the spec can fix it.
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
-- Ready False carries the failing condition's reason and message: the probe's failure
-- (ProbeFailed, naming the object), a missing Secret, an unknown retention, a bucket rule
-- that could not be installed. The controller retries; Argo CD shows why meanwhile.
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs

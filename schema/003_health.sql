-- The health last reported for each agent, so a change is recorded once as
-- a health_changed event (replicas race on the UPDATE; one wins).
ALTER TABLE agents ADD COLUMN IF NOT EXISTS health text NOT NULL DEFAULT 'healthy';

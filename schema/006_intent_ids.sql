-- An intent id names one intent of an org: admission looks the id up to
-- answer a repeated intent_id the same way, or refuse another agent's reuse
-- of it. A plain index: an org's older rows may repeat an id.
CREATE INDEX IF NOT EXISTS intents_org_id ON intents (org, intent_id);

-- A per-org quota of agents. An agent key that is not bound to one agent
-- registers an agent with each new address it names: without a quota it
-- could fill PostgreSQL, Redis and the health sweep with made-up agents.
-- org_limits holds the quota: a row '*' (written by costmeshd at start from
-- COSTMESH_MAX_AGENTS_PER_ORG) and optional rows per org that override it.
-- org_agents counts each org's agents; the trigger runs for new agents
-- only (an AFTER INSERT row trigger does not fire on ON CONFLICT updates).
CREATE TABLE IF NOT EXISTS org_limits (
    org        text PRIMARY KEY,
    max_agents bigint NOT NULL CHECK (max_agents >= 0)
);
CREATE TABLE IF NOT EXISTS org_agents (
    org    text PRIMARY KEY,
    agents bigint NOT NULL
);
INSERT INTO org_agents (org, agents) SELECT org, count(*) FROM agents GROUP BY org ON CONFLICT (org) DO NOTHING;

CREATE OR REPLACE FUNCTION costmesh_count_agent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n   bigint;
    cap bigint;
BEGIN
    INSERT INTO org_agents AS o (org, agents) VALUES (NEW.org, 1)
        ON CONFLICT (org) DO UPDATE SET agents = o.agents + 1 RETURNING agents INTO n;
    SELECT max_agents INTO cap FROM org_limits WHERE org IN (NEW.org, '*') ORDER BY org = '*' LIMIT 1;
    IF cap IS NOT NULL AND n > cap THEN
        RAISE EXCEPTION 'org % has reached its quota of % agents', NEW.org, cap
            USING ERRCODE = 'check_violation', CONSTRAINT = 'quota_agents_per_org';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS agents_quota ON agents;
CREATE TRIGGER agents_quota AFTER INSERT ON agents FOR EACH ROW EXECUTE FUNCTION costmesh_count_agent();

-- The agent quota's counter moved once per statement instead of once per new
-- agent. The row trigger of 008 updated the org's org_agents row once per
-- row, and a statement registering many agents of one org (a group commit
-- of new agents, a bulk import) made that row's version chain as long as
-- the rows: quadratic, minutes for 100,000 agents. A statement trigger sees
-- the inserted rows at once (a transition table: rows an ON CONFLICT skipped
-- or updated are not in it) and moves each org's counter once. The quota is
-- checked against the counter after the statement, with the same refusal.
CREATE OR REPLACE FUNCTION costmesh_count_agents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    over record;
BEGIN
    WITH added AS (SELECT org, count(*) AS n FROM new_agents GROUP BY org),
    up AS (INSERT INTO org_agents AS o (org, agents) SELECT org, n FROM added ORDER BY org
           ON CONFLICT (org) DO UPDATE SET agents = o.agents + excluded.agents RETURNING o.org, o.agents)
    SELECT up.org, l.cap INTO over FROM up
        CROSS JOIN LATERAL (SELECT max_agents AS cap FROM org_limits WHERE org IN (up.org, '*')
                            ORDER BY org = '*' LIMIT 1) l
        WHERE up.agents > l.cap LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'org % has reached its quota of % agents', over.org, over.cap
            USING ERRCODE = 'check_violation', CONSTRAINT = 'quota_agents_per_org';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS agents_quota ON agents;
CREATE TRIGGER agents_quota AFTER INSERT ON agents REFERENCING NEW TABLE AS new_agents
    FOR EACH STATEMENT EXECUTE FUNCTION costmesh_count_agents();
DROP FUNCTION IF EXISTS costmesh_count_agent();

-- Billable rates and customer usage (issue 15 item 2), and spend split by
-- model with cached vs fresh input (the rest of item 1).
--
-- A heartbeat gains one raw column: compute_ms, the compute time of the
-- work it reports, in whole milliseconds (a compute-second is 1000 of
-- them). A "step" is an LLM call or a tool call (llm_calls + tool_calls); a
-- "run" is a run_id, billed in the hour of its customer's first heartbeat
-- of it; a successful outcome is read from 018's outcomes at read time.
-- Everything else is summed off the acknowledged path.
SET LOCAL lock_timeout = '5s';

ALTER TABLE heartbeats ADD COLUMN IF NOT EXISTS compute_ms bigint NOT NULL DEFAULT 0;

-- Billing cards: per org and plan, versions of the unit prices, each in
-- force from its effective_from until the next version's. A plan named
-- after a customer rates that customer; 'default' rates every other one.
-- Prices are integer nano-dollars per unit. A version starts on a whole
-- UTC hour: quantities are summed per hour, so a price change can split
-- them exactly only there.
CREATE TABLE IF NOT EXISTS billing_cards (
    org                      text NOT NULL,
    plan                     text NOT NULL,
    effective_from           timestamptz NOT NULL
        CHECK (effective_from = date_trunc('hour', effective_from, 'UTC')),
    per_run_nanos            bigint NOT NULL CHECK (per_run_nanos >= 0),
    per_step_nanos           bigint NOT NULL CHECK (per_step_nanos >= 0),
    per_compute_second_nanos bigint NOT NULL CHECK (per_compute_second_nanos >= 0),
    per_outcome_nanos        bigint NOT NULL CHECK (per_outcome_nanos >= 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, plan, effective_from)
);

-- A customer's billable quantities per run and hour (run '' for the
-- heartbeats that name none). Sums are numeric: they span every agent of
-- the customer, which no cap bounds.
CREATE TABLE IF NOT EXISTS rollup_billing (
    org        text NOT NULL,
    customer   text NOT NULL,
    run        text NOT NULL,
    bucket     timestamptz NOT NULL,
    steps      numeric NOT NULL DEFAULT 0,
    compute_ms numeric NOT NULL DEFAULT 0,
    heartbeats bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org, customer, run, bucket)
);

-- Spend per model, for every unit kind of rollup_unit ('agent' with the
-- address as unit, 'run', 'session', 'workflow', 'customer'). The *_e
-- columns are the rate card's rating of the priced heartbeats, kept
-- exact: the sum of tokens times nano-dollars per million tokens, not yet
-- divided by a million; a read divides once and rounds half-even
-- (cm_div_half_even). cached_as_fresh_e is the cached tokens at the fresh
-- input price: what caching saved is its difference from cached_e.
CREATE TABLE IF NOT EXISTS rollup_model (
    org                text NOT NULL,
    kind               text NOT NULL,
    unit               text NOT NULL,
    address            text NOT NULL,
    model              text NOT NULL,
    bucket             timestamptz NOT NULL,
    cost_nanos         bigint NOT NULL DEFAULT 0,
    tokens_in          bigint NOT NULL DEFAULT 0,
    tokens_out         bigint NOT NULL DEFAULT 0,
    tokens_cached      bigint NOT NULL DEFAULT 0,
    tokens_cache_write bigint NOT NULL DEFAULT 0,
    heartbeats         bigint NOT NULL DEFAULT 0,
    rated              bigint NOT NULL DEFAULT 0,
    fresh_e            numeric NOT NULL DEFAULT 0,
    cached_e           numeric NOT NULL DEFAULT 0,
    cache_write_e      numeric NOT NULL DEFAULT 0,
    output_e           numeric NOT NULL DEFAULT 0,
    cached_as_fresh_e  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (org, kind, unit, address, model, bucket)
);
-- A unit's models in a window (every spend reply).
CREATE INDEX IF NOT EXISTS rollup_model_window ON rollup_model (org, kind, unit, bucket);

-- x / d rounded half-even to an integer (x >= 0, d > 0, both integers):
-- the rounding rule of every rated amount (docs/guarantees.md, section 3).
-- Integer division and remainder, so no numeric division scale cuts it.
CREATE OR REPLACE FUNCTION cm_div_half_even(x numeric, d numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
    SELECT div(x, d) + CASE WHEN 2 * mod(x, d) > d OR (2 * mod(x, d) = d AND mod(div(x, d), 2) = 1)
                            THEN 1 ELSE 0 END
    $$;

-- The customer and run a heartbeat is billed to (none without a customer):
-- cm_hb_units' attribution, the intent's attributes included.
CREATE OR REPLACE FUNCTION cm_hb_billed(address text, intent_id text, run_id text, session_id text,
                                        workflow text, customer text)
    RETURNS TABLE (customer text, run text) LANGUAGE sql STABLE
    AS $$
    SELECT max(u.unit) FILTER (WHERE u.kind = 'customer'), coalesce(max(u.unit) FILTER (WHERE u.kind = 'run'), '')
    FROM cm_hb_units($1, $2, $3, $4, $5, $6) u
    HAVING max(u.unit) FILTER (WHERE u.kind = 'customer') IS NOT NULL
    $$;

-- A priced heartbeat's tokens times the prices of the card version in
-- force at its ts (the one that priced it), per kind of token.
CREATE OR REPLACE FUNCTION cm_hb_rated(org text, model text, ts timestamptz, tokens_in bigint, tokens_cached bigint,
                                       tokens_cache_write bigint, tokens_out bigint)
    RETURNS TABLE (fresh numeric, cached numeric, cache_write numeric, output numeric, cached_as_fresh numeric)
    LANGUAGE sql STABLE
    AS $$
    SELECT ($4 - $5 - $6)::numeric * p.input_nanos, $5::numeric * p.cached_input_nanos,
           $6::numeric * p.cache_write_nanos, $7::numeric * p.output_nanos, $5::numeric * p.input_nanos
    FROM price_cards p WHERE p.org = $1 AND p.model = $2 AND p.effective_from <= $3
    ORDER BY p.effective_from DESC LIMIT 1
    $$;

-- Sums the raw rows with lo <= xid < hi into rollup_billing and
-- rollup_model. Returns the rollup rows written.
CREATE OR REPLACE FUNCTION cm_rollup_billing(lo bigint, hi bigint) RETURNS bigint
    LANGUAGE sql VOLATILE SET enable_seqscan = off SET jit = off
    AS $$
    WITH billed AS (INSERT INTO rollup_billing AS r (org, customer, run, bucket, steps, compute_ms, heartbeats)
        SELECT split_part(h.address, '/', 3), u.customer, u.run, date_trunc('hour', h.ts, 'UTC'),
            sum(h.llm_calls + h.tool_calls), sum(h.compute_ms), count(*)
        FROM heartbeats h
        CROSS JOIN LATERAL cm_hb_billed(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
        WHERE h.xid >= lo AND h.xid < hi
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (org, customer, run, bucket) DO UPDATE SET steps = r.steps + excluded.steps,
            compute_ms = r.compute_ms + excluded.compute_ms, heartbeats = r.heartbeats + excluded.heartbeats
        RETURNING 1),
    models AS (INSERT INTO rollup_model AS r (org, kind, unit, address, model, bucket, cost_nanos, tokens_in,
            tokens_out, tokens_cached, tokens_cache_write, heartbeats, rated, fresh_e, cached_e, cache_write_e,
            output_e, cached_as_fresh_e)
        SELECT split_part(h.address, '/', 3), u.kind, u.unit, h.address, h.model, date_trunc('hour', h.ts, 'UTC'),
            sum(h.cost_nanos), sum(h.tokens_in), sum(h.tokens_out), sum(h.tokens_cached), sum(h.tokens_cache_write),
            count(*), count(p.fresh), coalesce(sum(p.fresh), 0), coalesce(sum(p.cached), 0),
            coalesce(sum(p.cache_write), 0), coalesce(sum(p.output), 0), coalesce(sum(p.cached_as_fresh), 0)
        FROM heartbeats h
        CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
        LEFT JOIN LATERAL cm_hb_rated(split_part(h.address, '/', 3), h.model, h.ts, h.tokens_in, h.tokens_cached,
            h.tokens_cache_write, h.tokens_out) p ON h.priced_nanos IS NOT NULL
        WHERE h.xid >= lo AND h.xid < hi AND h.model IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (org, kind, unit, address, model, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
            tokens_out = r.tokens_out + excluded.tokens_out, tokens_cached = r.tokens_cached + excluded.tokens_cached,
            tokens_cache_write = r.tokens_cache_write + excluded.tokens_cache_write,
            heartbeats = r.heartbeats + excluded.heartbeats, rated = r.rated + excluded.rated,
            fresh_e = r.fresh_e + excluded.fresh_e, cached_e = r.cached_e + excluded.cached_e,
            cache_write_e = r.cache_write_e + excluded.cache_write_e, output_e = r.output_e + excluded.output_e,
            cached_as_fresh_e = r.cached_as_fresh_e + excluded.cached_as_fresh_e
        RETURNING 1)
    SELECT (SELECT count(*) FROM billed) + (SELECT count(*) FROM models)
    $$;

-- Every move of the watermark, by a worker of any release, sums the rows it
-- passes, in the move's transaction: so every row is counted once, and a
-- previous release's worker still running during a rolling upgrade needs
-- no help (unlike 016's units, this release's batch statement does not
-- call it: the trigger is its only caller, so no gen bump is needed).
CREATE OR REPLACE FUNCTION cm_rollup_billing_on_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lo > OLD.lo THEN
        PERFORM cm_rollup_billing(OLD.lo, NEW.lo);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS rollup_billing_on_move ON rollup_watermark;
CREATE TRIGGER rollup_billing_on_move BEFORE UPDATE ON rollup_watermark
    FOR EACH ROW EXECUTE FUNCTION cm_rollup_billing_on_move();

-- The rows already below the watermark, summed once: the lock keeps every
-- worker out until this migration commits. Rows older than migration 011
-- (no xid) are not billed: there were no billing cards then.
SELECT lo FROM rollup_watermark FOR UPDATE;
SELECT cm_rollup_billing(0, (SELECT lo FROM rollup_watermark));

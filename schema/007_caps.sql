-- Caps on an agent's running totals. Without them one agent's reports can
-- drive a rollup past bigint: PostgreSQL then refuses the whole group commit
-- that carries them, other orgs' heartbeats included, every time it is sent.
-- With them the statement fails with check_violation (23514) naming the cap,
-- and server/ingest.c answers only the request that crossed it (422
-- total_limit_exceeded, the constraint's name after "cap_" is the metric).
--
-- Every capped total is at most 10^18 (cost in nano-dollars: $1,000,000,000)
-- in every hour, day and month row. A month row is the sum of its hours, so
-- the month binds first. The sums costmeshd does stay far inside bigint and
-- int64 (9.2 * 10^18): a week's reply spans at most two months (2 * 10^18),
-- and one group commit adds at most 4,000 rows of 10^15 each to a capped
-- total (5 * 10^18). rollup_intent_hour needs no caps of its own: its rows
-- are parts of the agent's hour rows.
--
-- NOT VALID: the caps hold for every row written from now on without
-- scanning the table under a lock that would stop ingest. Rows written
-- before (an agent poisoned past a cap before this migration) stay as they
-- are, cannot grow, and are read exactly: replies sum in numeric.
ALTER TABLE rollup_agent
    ADD CONSTRAINT cap_cost_usd CHECK (cost_nanos <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_tokens_in CHECK (tokens_in <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_tokens_out CHECK (tokens_out <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_tokens_cached CHECK (tokens_cached <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_llm_calls CHECK (llm_calls <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_tool_calls CHECK (tool_calls <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_intents_total CHECK (intents_total <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_intents_succeeded CHECK (intents_succeeded <= 1000000000000000000) NOT VALID,
    ADD CONSTRAINT cap_intents_failed CHECK (intents_failed <= 1000000000000000000) NOT VALID;

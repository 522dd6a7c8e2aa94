-- costmesh system of record. Money is bigint nano-dollars everywhere.

CREATE TABLE IF NOT EXISTS api_keys (
    id          text PRIMARY KEY,
    org         text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'agent')),
    name        text NOT NULL DEFAULT '',
    agent       text,                       -- bound address, agent keys only
    key_hash    bytea NOT NULL UNIQUE,      -- SHA-256 of the key; the key itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_org ON api_keys (org);

CREATE TABLE IF NOT EXISTS agents (
    address         text PRIMARY KEY,       -- agent://ORG/ENV/NAME
    org             text NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz,
    last_status     text
);
CREATE INDEX IF NOT EXISTS agents_org ON agents (org, address);

-- Raw heartbeats: every accepted one, with its optional fields.
CREATE TABLE IF NOT EXISTS heartbeats (
    seq                 bigserial PRIMARY KEY,
    address             text NOT NULL,
    hb_id               text,               -- the client's idempotency key
    intent_id           text,
    run_id              text,
    session_id          text,
    workflow            text,
    parent_intent_id    text,
    status              text,
    ts                  timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    cost_nanos          bigint NOT NULL DEFAULT 0,
    tokens_in           bigint NOT NULL DEFAULT 0,
    tokens_out          bigint NOT NULL DEFAULT 0,
    tokens_cached       bigint NOT NULL DEFAULT 0,
    llm_calls           bigint NOT NULL DEFAULT 0,
    tool_calls          bigint NOT NULL DEFAULT 0,
    intents_total       bigint NOT NULL DEFAULT 0,
    intents_succeeded   bigint NOT NULL DEFAULT 0,
    intents_failed      bigint NOT NULL DEFAULT 0,
    avg_latency_ms      double precision
);
-- One (agent, id) is counted once: the insert does ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX IF NOT EXISTS heartbeats_dedupe ON heartbeats (address, hb_id) WHERE hb_id IS NOT NULL;

-- Rollups, kept in the same statement that inserts the heartbeats. Day and
-- month rows equal the sum of their hours by construction; they exist so the
-- hot windows can be mirrored into Redis as absolute values.
CREATE TABLE IF NOT EXISTS rollup_agent (
    address             text NOT NULL,
    grain               char(1) NOT NULL CHECK (grain IN ('h', 'd', 'm')),
    bucket              timestamptz NOT NULL,   -- start of the hour, day or month
    cost_nanos          bigint NOT NULL DEFAULT 0,
    tokens_in           bigint NOT NULL DEFAULT 0,
    tokens_out          bigint NOT NULL DEFAULT 0,
    tokens_cached       bigint NOT NULL DEFAULT 0,
    llm_calls           bigint NOT NULL DEFAULT 0,
    tool_calls          bigint NOT NULL DEFAULT 0,
    heartbeats          bigint NOT NULL DEFAULT 0,
    intents_total       bigint NOT NULL DEFAULT 0,
    intents_succeeded   bigint NOT NULL DEFAULT 0,
    intents_failed      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (address, grain, bucket)
);

CREATE TABLE IF NOT EXISTS rollup_intent_hour (
    address             text NOT NULL,
    intent_id           text NOT NULL,
    bucket              timestamptz NOT NULL,
    cost_nanos          bigint NOT NULL DEFAULT 0,
    tokens_in           bigint NOT NULL DEFAULT 0,
    tokens_out          bigint NOT NULL DEFAULT 0,
    tokens_cached       bigint NOT NULL DEFAULT 0,
    llm_calls           bigint NOT NULL DEFAULT 0,
    tool_calls          bigint NOT NULL DEFAULT 0,
    heartbeats          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (address, intent_id, bucket)
);

-- Cost policies, intents, kill switch, events and webhooks. Money in nano-dollars.

CREATE TABLE IF NOT EXISTS cost_policies (
    address                 text PRIMARY KEY,
    org                     text NOT NULL,
    max_intents_per_hour    bigint,
    max_intents_per_day     bigint,
    max_cost_per_hour       bigint,
    max_cost_per_day        bigint,
    max_cost_per_month      bigint,
    action_on_breach        text NOT NULL CHECK (action_on_breach IN ('block', 'alert')),
    alert_thresholds        text NOT NULL,  -- ascending fractions in 1e-9 units, comma-separated
    updated_at              timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE agents ADD COLUMN IF NOT EXISTS killed boolean NOT NULL DEFAULT false;

-- Admitted intents: the record Redis' intent counters are rebuilt from.
CREATE TABLE IF NOT EXISTS intents (
    seq             bigserial PRIMARY KEY,
    address         text NOT NULL,
    org             text NOT NULL,
    intent_id       text NOT NULL,
    intent_type     text,
    idempotency_key text,
    admitted_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_window ON intents (address, admitted_at);

CREATE TABLE IF NOT EXISTS events (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL,
    address     text,
    event_type  text NOT NULL,
    ts          timestamptz NOT NULL DEFAULT now(),
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_org ON events (org, id DESC);

CREATE TABLE IF NOT EXISTS webhooks (
    org         text PRIMARY KEY,
    url         text NOT NULL,
    secret      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The webhook outbox: one row per event to send to its org's webhook,
-- inserted by the statement that records the event, so a restart or a crash
-- loses none. server/webhook.c claims due rows (FOR UPDATE SKIP LOCKED, a
-- lease), posts them and records the outcome.

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              bigserial PRIMARY KEY,
    org             text NOT NULL,
    event_id        bigint NOT NULL,        -- events.id: the body is built from the event
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'abandoned')),
    attempts        int NOT NULL DEFAULT 0, -- counted when claimed, so it also fences a late writer
    due_at          timestamptz NOT NULL DEFAULT now(), -- the next attempt, or the end of a lease
    lease_until     timestamptz,            -- set while an attempt is in flight
    last_status     int,                    -- HTTP status of the last answer, NULL when there was none
    last_error      text,
    last_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- What is due, per org, oldest first: the claim walks it for each org.
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (org, due_at, id) WHERE status = 'pending';
-- Attempts in flight per org, for the per-org limit.
CREATE INDEX IF NOT EXISTS webhook_deliveries_leased ON webhook_deliveries (org)
    WHERE status = 'pending' AND lease_until IS NOT NULL;
-- The newest deliveries of an org, for GET /v1/mesh/webhook.
CREATE INDEX IF NOT EXISTS webhook_deliveries_org ON webhook_deliveries (org, id DESC);

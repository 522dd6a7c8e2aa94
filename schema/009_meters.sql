-- Meters of CloudEvents (POST /api/v1/events, OpenMeter's ingest shape): per
-- org, which event type counts and where in the event's data its cost,
-- tokens and agent are. A path is "$.a.b" (object keys from data's root);
-- NULL: the event does not carry it. An event whose type has no meter is
-- ignored (counted), as events no meter reads are in OpenMeter.
CREATE TABLE IF NOT EXISTS meters (
    org        text NOT NULL,
    event_type text NOT NULL,
    cost_usd   text,
    tokens_in  text,
    tokens_out text,
    agent      text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, event_type)
);

-- Rate cards: per org and model, versions of the price per million tokens,
-- each in force from its effective_from until the next version's. Prices
-- are integer nano-dollars per million tokens, so a card is stored exactly
-- and a heartbeat is rated without a double (docs/guarantees.md, "Money is
-- exact"). Versions are never updated in place: a change is a new version.
CREATE TABLE IF NOT EXISTS price_cards (
    org                text NOT NULL,
    model              text NOT NULL,
    effective_from     timestamptz NOT NULL,
    input_nanos        bigint NOT NULL CHECK (input_nanos >= 0),
    output_nanos       bigint NOT NULL CHECK (output_nanos >= 0),
    cached_input_nanos bigint NOT NULL CHECK (cached_input_nanos >= 0),
    cache_write_nanos  bigint NOT NULL CHECK (cache_write_nanos >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, model, effective_from)
);

-- What a heartbeat says of its model call: the model, the input tokens
-- written to a provider's cache (part of tokens_in, like tokens_cached),
-- and the server's own rating of it by the org's card (NULL when no card
-- priced it). cost_nanos stays the cost that counts: the client's figure
-- when it sent one, else this rating.
ALTER TABLE heartbeats ADD COLUMN IF NOT EXISTS model text;
ALTER TABLE heartbeats ADD COLUMN IF NOT EXISTS tokens_cache_write bigint NOT NULL DEFAULT 0;
ALTER TABLE heartbeats ADD COLUMN IF NOT EXISTS priced_nanos bigint;

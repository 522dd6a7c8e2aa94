-- Redis as the durable point (COSTMESH_DURABLE=redis, docs/guarantees.md
-- section 12): an acknowledged heartbeat is an entry of a Redis stream, and
-- the persister (server/persist.c) moves entries into the tables the group
-- commit writes, in batches, in stream order.
--
-- persist_mark is the last stream entry a committed batch held, moved in
-- that batch's statement: an entry at or below it is in PostgreSQL already,
-- so a batch drained again (a persister killed between its commit and the
-- trim of the stream) inserts nothing twice, rows without a client id
-- included. Stream ids are (milliseconds, sequence) pairs, compared as such.
CREATE TABLE IF NOT EXISTS persist_mark (
    id int PRIMARY KEY CHECK (id = 1),
    ms bigint NOT NULL,
    seq bigint NOT NULL
);
INSERT INTO persist_mark (id, ms, seq) VALUES (1, 0, 0) ON CONFLICT DO NOTHING;

-- The entries a batch found already in heartbeat_ids (a retry that came
-- after Redis forgot the first one's id): their increments of the hot
-- windows are taken back once the batch commits. Kept so a batch drained
-- again knows them; rows older than a day are pruned by the batch.
CREATE TABLE IF NOT EXISTS persist_dup (
    ms bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (ms, seq)
);

-- An acknowledged entry PostgreSQL refused alone (a cap of schema/007 that
-- Redis's month totals no longer saw, after Redis lost its data): kept here
-- with the reason, never dropped, and counted by /metrics.
CREATE TABLE IF NOT EXISTS persist_refused (
    ms bigint NOT NULL,
    seq bigint NOT NULL,
    payload text NOT NULL,
    sqlstate text NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ms, seq)
);

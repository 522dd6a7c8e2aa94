-- An agent registered by its cost policy or its first intent has never sent
-- a heartbeat: its recorded health starts as 'unknown', so the health
-- watcher records no false 'healthy -> unknown' change. The group commit
-- registers heartbeat senders as 'healthy' explicitly.
ALTER TABLE agents ALTER COLUMN health SET DEFAULT 'unknown';

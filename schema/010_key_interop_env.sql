-- Per key, the ENV of the agents that OTLP spans and CloudEvents sent with
-- it name (agent://ORG/ENV/NAME, ORG being the key's org): one org can
-- point its staging exporters and its production exporters at costmesh
-- with two keys. NULL: the server's COSTMESH_INTEROP_ENV. A nullable column
-- without a default: safe while an older costmeshd still serves.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS interop_env text;

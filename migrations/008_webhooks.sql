-- 008: webhooks (src/webhooks). Messages are written by triggers in the transaction of the
-- status change that causes them (an outbox), so a committed change always has its
-- messages and a rolled-back one never does; the dispatcher (src/jobs/webhook-dispatcher.ts)
-- claims due messages with FOR UPDATE SKIP LOCKED and records every attempt.

-- Signing secrets (Standard Webhooks: "whsec_" + base64 of random bytes). The owner is a
-- tenant (its per-request webhooks) or one of its endpoints. After a rotation the previous
-- secret still signs, next to the new one, until previous_expires_at.
CREATE TABLE webhook_secrets (
  owner_id            text PRIMARY KEY,
  tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  secret              text NOT NULL,
  previous_secret     text,
  previous_expires_at timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  rotated_at          timestamptz,
  CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);

-- A tenant's standing subscription (as Stripe's and Svix's endpoints).
CREATE TABLE webhook_endpoints (
  id              text PRIMARY KEY,
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  url             text NOT NULL,
  description     text NOT NULL DEFAULT '',
  -- The event types sent here, resolved at creation (src/webhooks/event-types.ts).
  events          text[] NOT NULL,
  enabled         boolean NOT NULL DEFAULT true,
  -- Why the service disabled it: gone (it answered 410) or failing (every attempt failed
  -- for WEBHOOK_DISABLE_AFTER_MS); null when enabled or disabled through the API.
  disabled_reason text,
  -- The first failed attempt since the last success; null when the last attempt succeeded.
  failing_since   timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id, id);

-- Per-request subscriptions (as Replicate's `webhook` and `webhook_events_filter`).
ALTER TABLE training_runs ADD COLUMN webhook_url text, ADD COLUMN webhook_events text[];
ALTER TABLE captioning_jobs ADD COLUMN webhook_url text, ADD COLUMN webhook_events text[];

-- One event for one receiver. The id is the `webhook-id` of every attempt, so receivers can
-- deduplicate retries.
CREATE TABLE webhook_messages (
  id                  text PRIMARY KEY,
  tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- The endpoint it goes to (its URL and secret at the time of each attempt), or null for a
  -- per-request webhook: then `url`, signed with the tenant's secret.
  endpoint_id         text REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  url                 text,
  event_type          text NOT NULL,
  resource_type       text NOT NULL,
  resource_id         text NOT NULL,
  -- The resource's row when the event happened; the body's `data` is rendered from it.
  snapshot            jsonb NOT NULL,
  -- The body as first sent (every retry sends the same bytes); null until then.
  payload             text,
  status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'succeeded', 'failed')),
  -- Attempts made since the message was created or last redelivered (the retry schedule's position).
  attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at     timestamptz NOT NULL DEFAULT now(),
  last_error          text,
  -- A dispatcher holds a message it is sending under a lease (src/jobs/lease-sql.ts).
  lease_owner         text,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  cancel_requested_at timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  completed_at        timestamptz,
  CHECK ((endpoint_id IS NULL) = (url IS NOT NULL)),
  CHECK ((status IN ('succeeded', 'failed')) = (completed_at IS NOT NULL))
);

CREATE INDEX webhook_messages_due_idx ON webhook_messages (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_messages_tenant_idx ON webhook_messages (tenant_id, id);
CREATE INDEX webhook_messages_resource_idx ON webhook_messages (tenant_id, resource_id, id);

-- Every attempt: when, where, what came back (the first 1 KiB), or why nothing did.
CREATE TABLE webhook_attempts (
  id              bigserial PRIMARY KEY,
  message_id      text NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
  url             text NOT NULL,
  started_at      timestamptz NOT NULL,
  status_code     integer,
  latency_ms      integer,
  response_body   text,
  error_code      text,
  error_message   text,
  -- When the next attempt was scheduled for; null when this one ended the message.
  next_attempt_at timestamptz
);

CREATE INDEX webhook_attempts_message_idx ON webhook_attempts (message_id, id);

-- A message id as the service makes its ids (src/db/ids.ts): "msg_" and a ULID, the
-- 48-bit millisecond time then 80 random bits in Crockford base32.
CREATE FUNCTION webhook_message_id() RETURNS text AS $$
DECLARE
  alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
  id text := '';
BEGIN
  FOR i IN 1..10 LOOP
    id := substr(alphabet, (ms % 32)::integer + 1, 1) || id;
    ms := ms / 32;
  END LOOP;
  FOR i IN 1..16 LOOP
    id := id || substr(alphabet, floor(random() * 32)::integer + 1, 1);
  END LOOP;
  RETURN 'msg_' || id;
END;
$$ LANGUAGE plpgsql VOLATILE;

-- A message that is due now (queued, pinged or redelivered) wakes the dispatchers: NOTIFY is
-- delivered at commit, to every replica, and once per transaction however many rows.
CREATE FUNCTION webhook_message_due() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('webhook_messages', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webhook_message_due AFTER INSERT OR UPDATE OF status ON webhook_messages
  FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_attempt_at <= now())
  EXECUTE FUNCTION webhook_message_due();

-- Queues `event` of a resource for everyone subscribed to it: the per-request URL when its
-- events include it, and each enabled endpoint of the tenant that listens to it.
CREATE FUNCTION webhook_enqueue(p_tenant text, p_resource_type text, p_resource_id text, p_event text,
                                p_snapshot jsonb, p_url text, p_events text[]) RETURNS void AS $$
BEGIN
  IF p_url IS NOT NULL AND p_event = ANY (p_events) THEN
    INSERT INTO webhook_messages (id, tenant_id, url, event_type, resource_type, resource_id, snapshot)
    VALUES (webhook_message_id(), p_tenant, p_url, p_event, p_resource_type, p_resource_id, p_snapshot);
  END IF;
  INSERT INTO webhook_messages (id, tenant_id, endpoint_id, event_type, resource_type, resource_id, snapshot)
  SELECT webhook_message_id(), p_tenant, e.id, p_event, p_resource_type, p_resource_id, p_snapshot
    FROM webhook_endpoints e
   WHERE e.tenant_id = p_tenant AND e.enabled AND p_event = ANY (e.events)
   ORDER BY e.id;
END;
$$ LANGUAGE plpgsql;

-- The lifecycle events of a resource table with id, tenant_id, status, started_at,
-- webhook_url and webhook_events: <resource>.started when it first starts, and
-- <resource>.<status> when it ends. TG_ARGV[0] names the resource ("training_run").
-- A new resource subscribes with one CREATE TRIGGER.
CREATE FUNCTION webhook_resource_events() RETURNS trigger AS $$
BEGIN
  IF OLD.started_at IS NULL AND NEW.started_at IS NOT NULL THEN
    PERFORM webhook_enqueue(NEW.tenant_id, TG_ARGV[0], NEW.id, TG_ARGV[0] || '.started', to_jsonb(NEW),
                            NEW.webhook_url, NEW.webhook_events);
  END IF;
  IF OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('succeeded', 'failed', 'canceled') THEN
    PERFORM webhook_enqueue(NEW.tenant_id, TG_ARGV[0], NEW.id, TG_ARGV[0] || '.' || NEW.status, to_jsonb(NEW),
                            NEW.webhook_url, NEW.webhook_events);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER training_run_webhooks AFTER UPDATE ON training_runs
  FOR EACH ROW EXECUTE FUNCTION webhook_resource_events('training_run');
CREATE TRIGGER captioning_job_webhooks AFTER UPDATE ON captioning_jobs
  FOR EACH ROW EXECUTE FUNCTION webhook_resource_events('captioning_job');

-- training_run.validation: a run recorded validation images and loss.
CREATE FUNCTION webhook_training_run_validation() RETURNS trigger AS $$
DECLARE
  run record;
BEGIN
  SELECT tenant_id, webhook_url, webhook_events INTO run FROM training_runs WHERE id = NEW.run_id;
  PERFORM webhook_enqueue(run.tenant_id, 'training_run', NEW.run_id, 'training_run.validation', to_jsonb(NEW),
                          run.webhook_url, run.webhook_events);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER training_run_validation_webhooks AFTER INSERT ON training_run_events
  FOR EACH ROW WHEN (NEW.type = 'validation') EXECUTE FUNCTION webhook_training_run_validation();

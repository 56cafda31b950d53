-- 006: Idempotency-Key records (src/plugins/idempotency.ts). A create request that sends
-- the header claims (tenant, key) before it runs; its 2xx answer is stored here so a retry
-- gets the same answer instead of a second resource. Any other answer deletes the row.

CREATE TABLE idempotency_keys (
  tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- The header value as sent: 1 to 255 printable ASCII characters.
  key              text NOT NULL,
  -- sha256 (hex) of method, route, params and canonical body: the same key with another
  -- request is refused rather than answered with the first request's response.
  fingerprint      text NOT NULL,
  -- Random per claim: only the request holding the claim may store or delete the row, so a
  -- request that outlived its claim (taken over as abandoned) cannot touch its successor's.
  claim_token      text NOT NULL,
  -- NULL while the first request is in flight; then what it answered.
  response_status  integer CHECK (response_status BETWEEN 200 AND 299),
  -- The replayed response headers (location, content-type), lower-case names.
  response_headers jsonb,
  response_body    text,
  -- When the key was claimed: an in-flight claim is abandoned after 5 minutes, a stored
  -- response expires 24 hours after it.
  created_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz,
  PRIMARY KEY (tenant_id, key),
  CHECK ((response_status IS NULL) = (completed_at IS NULL))
);

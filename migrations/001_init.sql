-- 001: tenants, their API keys, and datasets.
-- IDs are prefixed, time-ordered opaque strings made by the service (tn_, key_, ds_ + 26 chars).
-- Every tenant-owned row carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
  id         text PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id         text PRIMARY KEY,
  tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- sha256 (hex) of the whole key; the key itself is shown once and never stored.
  key_hash   text NOT NULL UNIQUE,
  -- The key's first characters, to tell keys apart in listings and logs.
  key_prefix text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id);

CREATE TABLE datasets (
  id            text PRIMARY KEY,
  tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name          text NOT NULL,
  trigger_token text NOT NULL,
  class_word    text NOT NULL,
  -- Number of images in the dataset, kept up to date by the images migration
  -- (002_images.sql) in the same transaction that adds or removes an image.
  image_count   integer NOT NULL DEFAULT 0 CHECK (image_count >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  -- Lets child tables reference (tenant_id, dataset_id) so a row can never point
  -- at another tenant's dataset; also the index behind tenant-scoped pagination.
  UNIQUE (tenant_id, id)
);

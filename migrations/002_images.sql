-- 002: images of datasets, and the queue of blobs that may have lost their last reference.
-- Image bytes live in the blob store (src/storage), addressed by sha256; a row is inserted
-- only after its blob was written and fsynced, so no row ever points at a missing blob.

CREATE TABLE images (
  id                text PRIMARY KEY,
  tenant_id         text NOT NULL,
  dataset_id        text NOT NULL,
  -- Lower-case hex SHA-256 of the stored bytes: the blob's address.
  sha256            text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  byte_size         integer NOT NULL CHECK (byte_size > 0),
  -- Sniffed from the bytes, never taken from the upload's name or Content-Type.
  format            text NOT NULL CHECK (format IN ('jpeg', 'png', 'webp')),
  -- As displayed: the EXIF orientation is already applied.
  width             integer NOT NULL CHECK (width > 0),
  height            integer NOT NULL CHECK (height > 0),
  -- The uploaded file name, or the path inside the uploaded zip.
  original_filename text,
  caption           text,
  -- Where the caption came from: 'upload' for a sidecar .txt; other sources may follow.
  caption_source    text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  -- The composite key makes it impossible to attach an image to another tenant's dataset.
  FOREIGN KEY (tenant_id, dataset_id) REFERENCES datasets (tenant_id, id) ON DELETE CASCADE,
  UNIQUE (dataset_id, sha256),
  UNIQUE (tenant_id, id),
  CHECK ((caption IS NULL) = (caption_source IS NULL))
);

-- Listing a dataset's images newest first (ids are time-ordered).
CREATE INDEX images_dataset_id_id_idx ON images (tenant_id, dataset_id, id);
-- "Does anything still reference this blob?" before unlinking it.
CREATE INDEX images_sha256_idx ON images (sha256);

-- datasets.image_count follows inserts and deletes in the same transaction. When a whole
-- dataset is deleted the cascade's UPDATE finds the dataset row already gone and does nothing.
CREATE FUNCTION images_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE datasets SET image_count = image_count + 1 WHERE id = NEW.dataset_id;
    RETURN NEW;
  END IF;
  UPDATE datasets SET image_count = image_count - 1 WHERE id = OLD.dataset_id;
  RETURN OLD;
END;
$$;

CREATE TRIGGER images_count_insert AFTER INSERT ON images
  FOR EACH ROW EXECUTE FUNCTION images_count_change();
CREATE TRIGGER images_count_delete AFTER DELETE ON images
  FOR EACH ROW EXECUTE FUNCTION images_count_change();

-- Blobs whose referencing row was deleted (by DELETE /v1/images/{id} or a dataset's
-- cascade). Written in the deleting transaction, so a crash right after the commit still
-- leaves the work recorded; the blob collector unlinks each one that nothing references
-- any more and then removes its queue row.
CREATE TABLE blob_releases (
  sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  released_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION images_release_blob() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO blob_releases (sha256) VALUES (OLD.sha256) ON CONFLICT (sha256) DO NOTHING;
  RETURN OLD;
END;
$$;

CREATE TRIGGER images_release_blob AFTER DELETE ON images
  FOR EACH ROW EXECUTE FUNCTION images_release_blob();

-- Each snapshot image's size as displayed (after its EXIF orientation), so the trainer
-- buckets it and names its cached latents without reading its bytes: a run over a large
-- dataset decodes only the images its cache lacks. Null in snapshots taken before this.
ALTER TABLE training_run_images
  ADD COLUMN width integer CHECK (width > 0),
  ADD COLUMN height integer CHECK (height > 0);

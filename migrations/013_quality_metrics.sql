-- 013: image-quality metrics (issue 25). A run keeps its latest scored set of validation
-- images beside its progress ({step, final, values, unavailable}: after a completed run with
-- validation.final_images it is the end-of-run set); a generation asked to be scored
-- (params.evaluation) keeps what its worker computed ({values, unavailable}). Null before.
ALTER TABLE training_runs ADD COLUMN quality_metrics jsonb;
ALTER TABLE generations ADD COLUMN evaluation jsonb;

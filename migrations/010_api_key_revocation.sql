-- API keys are cached by each replica for a few seconds (API_KEY_CACHE_MS). A key that is
-- revoked, deleted or moved tells every replica at commit, so none keeps accepting it.
CREATE FUNCTION api_key_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('api_keys', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_key_changed AFTER UPDATE OR DELETE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION api_key_changed();

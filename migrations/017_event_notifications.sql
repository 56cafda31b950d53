-- Every replica learns at once of what another one records:
--  * each event of a run, and each change of a generation's status or progress, notifies
--    its id at commit; a replica's event streams and waits follow these channels
--    (src/services/run-events-bus.ts) and poll only while their LISTEN connection is down;
--  * a run or a generation queued (created, or handed back) wakes the workers of every
--    replica, which otherwise find it at their next poll.
-- notify_row(channel [, column]): NOTIFY channel with the new row's column as the payload ('' without one).
CREATE FUNCTION notify_row() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], coalesce(to_jsonb(NEW) ->> TG_ARGV[1], ''));
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER training_run_event_recorded AFTER INSERT ON training_run_events
  FOR EACH ROW EXECUTE FUNCTION notify_row('training_run_events', 'run_id');

CREATE TRIGGER generation_changed AFTER UPDATE OF status, progress ON generations
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.progress IS DISTINCT FROM NEW.progress)
  EXECUTE FUNCTION notify_row('generations', 'id');

CREATE TRIGGER training_run_queued AFTER INSERT OR UPDATE OF status ON training_runs
  FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION notify_row('training_runs_queued');

CREATE TRIGGER generation_queued AFTER INSERT OR UPDATE OF status ON generations
  FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION notify_row('generations_queued');

// Training run event: what a run told its watchers, in order (JSON pages or Server-Sent Events).
import { Type, type Static } from 'typebox';
import { Timestamp } from './common.js';

export const EVENT_TYPES = ['status', 'progress', 'log', 'checkpoint', 'validation', 'artifact'] as const;
const MAX_EVENTS_PAGE = 1000;

export const TrainingRunEventSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[0-9]+$', description: 'Increasing; the SSE id, and what Last-Event-ID and `after` take' }),
    type: Type.Enum([...EVENT_TYPES], {
      description: 'status: {status, attempt, error}; progress: the run\'s progress; log: {level, message}; ' +
        'checkpoint: {step, artifact}; validation: {step, validation_loss, images, metrics, unavailable, final} (metrics: the quality ' +
        'metrics scored by name, {} when none; unavailable: each asked metric not computed, with why; final: the end-of-run set); ' +
        'artifact: a LoRA file written',
    }),
    data: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
  },
  { $id: 'TrainingRunEvent', additionalProperties: false },
);
export type TrainingRunEvent = Static<typeof TrainingRunEventSchema>;

export const ListTrainingRunEventsQuery = Type.Object(
  {
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'Only events after this id (the last id you saw); omit for the first' })),
    limit: Type.Integer({ minimum: 1, maximum: MAX_EVENTS_PAGE, default: 100, description: 'Most events to return' }),
    type: Type.Optional(Type.Enum([...EVENT_TYPES], { description: 'Only events of this type' })),
  },
  { additionalProperties: false },
);

export const TrainingRunEventPage = Type.Object(
  {
    data: Type.Array(Type.Ref('TrainingRunEvent')),
    has_more: Type.Boolean({ description: 'More events follow; ask again with after = the last id' }),
  },
  { additionalProperties: false, description: 'Events, oldest first' },
);

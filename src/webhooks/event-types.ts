// The webhook event types. A resource's lifecycle events are queued by the database
// trigger of migration 008 (webhook_resource_events: <resource>.started and
// <resource>.<terminal status>); this list says which of them may be subscribed to, and
// which a subscription gets when it names none. A new event type is one line here (and,
// for a new resource, one CREATE TRIGGER).

export interface WebhookEventType {
  /** The resource whose `data` the body carries. */
  resource: 'training_run' | 'captioning_job' | 'generation' | 'dataset_import' | 'webhook_endpoint';
  /** Sent to a subscription that names no events. */
  byDefault: boolean;
  description: string;
}

export const WEBHOOK_EVENT_TYPES = {
  'training_run.started': { resource: 'training_run', byDefault: false, description: 'A worker took the run (status starting), once per run' },
  'training_run.validation': { resource: 'training_run', byDefault: false, description: 'The run rendered its validation images and measured validation loss (opt-in: one per validation)' },
  'training_run.succeeded': { resource: 'training_run', byDefault: true, description: 'The run saved its LoRA (a full run: registered its model)' },
  'training_run.failed': { resource: 'training_run', byDefault: true, description: 'The run stopped with an error' },
  'training_run.canceled': { resource: 'training_run', byDefault: true, description: 'The run was canceled' },
  'captioning_job.succeeded': { resource: 'captioning_job', byDefault: true, description: 'The captioning job finished' },
  'captioning_job.failed': { resource: 'captioning_job', byDefault: true, description: 'The captioning job failed' },
  'captioning_job.canceled': { resource: 'captioning_job', byDefault: true, description: 'The captioning job was canceled' },
  'generation.started': { resource: 'generation', byDefault: false, description: 'A worker took the generation (status starting)' },
  'generation.succeeded': { resource: 'generation', byDefault: true, description: 'The generation stored its images' },
  'generation.failed': { resource: 'generation', byDefault: true, description: 'The generation stopped with an error' },
  'generation.canceled': { resource: 'generation', byDefault: true, description: 'The generation was canceled' },
  'dataset_import.succeeded': { resource: 'dataset_import', byDefault: true, description: 'The dataset import read every entry of its archive (refused entries are listed)' },
  'dataset_import.failed': { resource: 'dataset_import', byDefault: true, description: 'The dataset import stopped: its archive could not be read on' },
} as const satisfies Record<string, WebhookEventType>;

export type WebhookEventTypeName = keyof typeof WEBHOOK_EVENT_TYPES;

/** Sent by POST /v1/webhook-endpoints/{id}/test only; never subscribed to. */
export const PING_EVENT = 'ping';

export const EVENT_TYPE_NAMES = Object.keys(WEBHOOK_EVENT_TYPES) as WebhookEventTypeName[];

/** What a subscription of `resource` gets when it names no events; every resource's when undefined. */
export function defaultEvents(resource?: WebhookEventType['resource']): WebhookEventTypeName[] {
  return EVENT_TYPE_NAMES.filter((name) => {
    const type: WebhookEventType = WEBHOOK_EVENT_TYPES[name];
    return type.byDefault && (resource === undefined || type.resource === resource);
  });
}

/** The event types of one resource (what a per-request webhook on it may name). */
export function eventsOf(resource: WebhookEventType['resource']): WebhookEventTypeName[] {
  return EVENT_TYPE_NAMES.filter((name) => WEBHOOK_EVENT_TYPES[name].resource === resource);
}

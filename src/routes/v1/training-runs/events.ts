// /v1/training-runs/{id}/events and /logs: what a run told its watchers. Events come as
// JSON pages, or, for Accept: text/event-stream, as Server-Sent Events that resume after
// Last-Event-ID, carry a heartbeat comment every SSE_HEARTBEAT_MS and end when the run
// has ended and every event is out (a reconnect then gets 204: stop reconnecting).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { fieldError, invalidInput } from '../../../errors.js';
import { problemResponses } from '../../../schemas/problem.js';
import { ListTrainingRunEventsQuery, TrainingRunEventPage } from '../../../schemas/training-run-events.js';
import { TrainingRunParams } from '../../../schemas/training-runs.js';
import { eventStreams, wantsEventStream } from '../../event-stream.js';

const TAGS = ['training-runs'];
const EVENT_ID = /^[0-9]{1,19}$/;

/** Where a stream starts: Last-Event-ID (a reconnect) over ?after (the first connection). */
function streamStart(request: FastifyRequest, after: string | undefined): string {
  const header = request.headers['last-event-id'];
  if (typeof header === 'string' && header !== '') {
    if (!EVENT_ID.test(header)) {
      throw invalidInput('Last-Event-ID is not an event id', [fieldError('headers', 'last-event-id', 'must be the id of an event of this stream')]);
    }
    return header;
  }
  return after ?? '0';
}

const trainingRunEventRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { events } = fastify.training;
  const heartbeatMs = fastify.config.training.sseHeartbeatMs;
  const openStream = eventStreams(fastify, heartbeatMs);

  async function stream(request: FastifyRequest, reply: FastifyReply, runId: string, after: string) {
    const tenantId = request.tenant.id;
    if (await events.isDrained(tenantId, runId, after)) return reply.status(204).send(null); // 404 thrown for an unknown run
    return openStream(request, reply, 'training run', async (write, signal) => {
      for await (const event of events.follow(tenantId, runId, after, signal)) write({ id: event.id, type: event.type, data: event });
    });
  }

  fastify.get(
    '/:id/events',
    {
      schema: {
        operationId: 'listTrainingRunEvents',
        tags: TAGS,
        summary: "A training run's events: JSON pages, or a live Server-Sent Events stream",
        description:
          'Events are status changes, progress (about once a second while training), log lines, checkpoints written, ' +
          'validation results with image URLs, and the LoRA files written; ids increase. As JSON: a page of events after ' +
          '`after`, oldest first. With Accept: text/event-stream: Server-Sent Events (id = the event id, event = its type, ' +
          'data = the event as JSON) from `after` or Last-Event-ID on; a heartbeat comment every 15 s; the stream ends when ' +
          'the run has ended and every event is out, and a reconnect after that gets 204.',
        params: TrainingRunParams,
        querystring: ListTrainingRunEventsQuery,
        response: {
          200: {
            description: 'Events (JSON), or the event stream',
            content: {
              'application/json': { schema: TrainingRunEventPage },
              'text/event-stream': { schema: { type: 'string', description: 'Server-Sent Events; each data line is a TrainingRunEvent' } },
            },
          },
          204: { description: 'Event stream only: the run has ended and no event follows Last-Event-ID; do not reconnect', type: 'null' },
          ...problemResponses(400, 401, 404, 500),
        },
      },
    },
    async (request, reply) => {
      const { after, limit, type } = request.query;
      if (wantsEventStream(request)) return stream(request, reply, request.params.id, streamStart(request, after));
      return events.page(request.tenant.id, request.params.id, after ?? '0', limit, type);
    },
  );

  fastify.get(
    '/:id/logs',
    {
      schema: {
        operationId: 'getTrainingRunLogs',
        tags: TAGS,
        summary: "A training run's log as text",
        description: 'One line per log or status event of /events: time, level, message.',
        params: TrainingRunParams,
        response: {
          200: { description: 'The log', content: { 'text/plain': { schema: { type: 'string' } } } },
          ...problemResponses(401, 404, 500),
        },
      },
    },
    async (request, reply) => reply.type('text/plain; charset=utf-8').send(await events.log(request.tenant.id, request.params.id)),
  );
};

export default trainingRunEventRoutes;

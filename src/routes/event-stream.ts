// Server-Sent Events responses (training run events, dataset import progress): the headers
// proxies need, a reconnect delay, a heartbeat comment so idle connections stay open, and
// every open stream ended when the app closes, so a graceful stop does not wait on them.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** How long a client waits before reconnecting a dropped stream. */
const RETRY_MS = 2000;

export function wantsEventStream(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/event-stream');
}

/** Writes one event of the stream. */
export type WriteEvent = (event: { id?: string; type: string; data: unknown }) => void;

/** The event-stream responder of the routes of `fastify` (one per route plugin). */
export function eventStreams(fastify: FastifyInstance, heartbeatMs: number) {
  const streams = new Set<AbortController>();
  fastify.addHook('preClose', async () => {
    for (const stream of streams) stream.abort();
  });

  /**
   * Answers with an event stream that `produce` writes until it returns (or the client goes
   * away: `signal` is aborted); then the stream ends. A failure of `produce` is logged as
   * `what` and ends the stream.
   */
  return async function stream(
    request: FastifyRequest, reply: FastifyReply, what: string, produce: (write: WriteEvent, signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    const controller = new AbortController();
    streams.add(controller);
    request.raw.on('close', () => controller.abort());
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // nginx: do not buffer the stream
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), heartbeatMs);
    const write: WriteEvent = ({ id, type, data }) => {
      res.write(`${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    try {
      await produce(write, controller.signal);
    } catch (error) {
      request.log.warn({ err: error }, `${what} event stream failed`);
    } finally {
      clearInterval(heartbeat);
      streams.delete(controller);
      res.end();
    }
  };
}

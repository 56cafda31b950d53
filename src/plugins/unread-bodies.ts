// An answer that goes out while its request's body is still arriving (a 413 at the body
// limit, a 401, 404 or 415 before the body was read, an upload refused part-way) first waits
// for the rest of the body, reading and discarding it. Node closes a connection after
// answering a request it did not read to the end, and a client still writing into it (undici,
// so Node's fetch and our generated client) fails with EPIPE before it reads the answer: 12
// of 20 oversized JSON bodies did so before this. Past UNREAD_BODY_MAX_BYTES or
// UNREAD_BODY_MAX_MS the answer goes out at once with `Connection: close`: a client may then
// see the reset, but the server does not read gigabytes it will drop.
import type { IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';

/** The most of an unwanted body read before answering: well above every JSON limit, far below archive sizes. */
export const UNREAD_BODY_MAX_BYTES = 64 * 1024 * 1024;
/** The longest an answer waits for the rest of an unwanted body (a slow client). */
export const UNREAD_BODY_MAX_MS = 10_000;

/**
 * Reads and discards what is left of `request`'s body. Resolves true once it has ended, false when more than
 * `maxBytes` are left (by its Content-Length, or as read), it takes longer than `maxMs`, or it fails.
 */
export function discardBody(request: IncomingMessage, maxBytes = UNREAD_BODY_MAX_BYTES, maxMs = UNREAD_BODY_MAX_MS): Promise<boolean> {
  // complete: the parser has seen the whole body; readableEnded: it has all been read
  // (light-my-request's requests, which inject() makes, have no `complete`).
  if (request.complete || request.readableEnded) return Promise.resolve(true);
  if (request.destroyed) return Promise.resolve(false);
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let read = 0;
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('close', onClose);
      request.off('error', onError);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      read += chunk.length;
      if (read > maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(request.complete);
    const onError = () => finish(false);
    const timer = setTimeout(() => finish(false), maxMs);
    request.on('data', onData);
    request.once('end', onEnd);
    request.once('close', onClose);
    request.once('error', onError);
    // A parser the route gave up on (a multipart upload refused part-way) would hold the
    // stream paused through its pipe: it gets nothing more.
    request.unpipe();
    request.resume();
  });
}

export default fp(async (app) => {
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.raw.complete || request.raw.readableEnded) return payload;
    if (!(await discardBody(request.raw))) reply.header('connection', 'close');
    return payload;
  });
}, { name: 'unread-bodies' });

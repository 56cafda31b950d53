// The web console (src/console, built by npm run build:console into dist/console): its
// pages under /console (every path answers index.html, so the console's URLs can be
// bookmarked and reloaded) and its hashed assets, cached for a year. The files are read
// once at start-up. Every answer carries a Content-Security-Policy that allows the
// console's own scripts only (no inline script), and refuses framing.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ProblemError, notFound } from '../errors.js';
import { consoleDir } from '../paths.js';

export const CONSOLE_PATH = '/console';

/** What the console may load: itself, images it made from fetched bytes (blob:), the API. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY', // frame-ancestors' twin for browsers that predate it
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};
/** Asset names carry their content's hash: a new build is a new URL. */
const ASSET_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** The page is revalidated every time, so a new build is picked up at once. */
const PAGE_CACHE_CONTROL = 'no-cache';

const MEDIA_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

function staticFile(file: string, type: string): StaticFile {
  const body = fs.readFileSync(file);
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/** The built console, or undefined when it has not been built. */
function readBuild(dir: string): { page: StaticFile, assets: Map<string, StaticFile> } | undefined {
  const index = path.join(dir, 'index.html');
  if (!fs.existsSync(index)) return undefined;
  const assets = new Map<string, StaticFile>();
  const assetsDir = path.join(dir, 'assets');
  for (const name of fs.existsSync(assetsDir) ? fs.readdirSync(assetsDir) : []) {
    const type = MEDIA_TYPES[path.extname(name)];
    if (type !== undefined) assets.set(name, staticFile(path.join(assetsDir, name), type));
  }
  return { page: staticFile(index, 'text/html; charset=utf-8'), assets };
}

export interface ConsoleRoutesOptions {
  /** Where the built console is (tests); dist/console by default. */
  dir?: string;
}

const consoleRoutes: FastifyPluginAsync<ConsoleRoutesOptions> = async (fastify, options) => {
  const build = readBuild(options.dir ?? consoleDir);
  if (build === undefined) fastify.log.warn({ dir: options.dir ?? consoleDir }, 'the web console is not built (npm run build:console); /console answers 503');

  const send = (reply: FastifyReply, file: StaticFile, cacheControl: string, ifNoneMatch: string | undefined) => {
    reply.headers(SECURITY_HEADERS).header('cache-control', cacheControl).header('etag', file.etag);
    if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim() === file.etag)) return reply.status(304).send();
    return reply.type(file.type).send(file.body);
  };

  const page = async (request: { headers: { 'if-none-match'?: string } }, reply: FastifyReply) => {
    if (build === undefined) {
      throw new ProblemError({
        status: 503,
        type: 'console-not-built',
        title: 'The web console is not built',
        detail: 'Run `npm run build` (or `npm run build:console`) and restart the service; the API is unaffected.',
      });
    }
    return send(reply, build.page, PAGE_CACHE_CONTROL, request.headers['if-none-match']);
  };

  // Not part of the API: left out of the OpenAPI document.
  const hidden = { schema: { hide: true } };
  fastify.get('/', hidden, async (_request, reply) => reply.redirect(`${CONSOLE_PATH}/`));
  fastify.get(CONSOLE_PATH, hidden, page);
  fastify.get<{ Params: { name: string } }>(`${CONSOLE_PATH}/assets/:name`, hidden, async (request, reply) => {
    const file = build?.assets.get(request.params.name);
    if (file === undefined) {
      reply.headers(SECURITY_HEADERS);
      throw notFound('console asset', request.params.name);
    }
    return send(reply, file, ASSET_CACHE_CONTROL, request.headers['if-none-match']);
  });
  // Every other path is a page of the console's own router.
  fastify.get(`${CONSOLE_PATH}/*`, hidden, page);
};

export default consoleRoutes;

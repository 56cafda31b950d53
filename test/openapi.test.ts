// The committed OpenAPI document is what the routes generate, it validates, and every
// operation is documented: operationId, tag, summary, problem responses, security.
import SwaggerParser from '@apidevtools/swagger-parser';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { test } from 'node:test';
import { generateOpenApiJson } from '../src/cli/openapi.js';
import { openapiFile } from '../src/paths.js';

const generated = await generateOpenApiJson();
const document = JSON.parse(generated) as {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { type: string; scheme: string }> };
  security: Array<Record<string, string[]>>;
};

interface Operation {
  operationId?: string;
  tags?: string[];
  summary?: string;
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { description?: string; content?: Record<string, { schema: { $ref?: string } }> }>;
}

const HTTP_METHODS = new Set(['get', 'post', 'put', 'patch', 'delete']);

function operations(): Array<[string, Operation]> {
  const out: Array<[string, Operation]> = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (HTTP_METHODS.has(method)) out.push([`${method.toUpperCase()} ${path}`, operation]);
    }
  }
  return out;
}

test('openapi/openapi.json is up to date (run `npm run openapi` after changing routes)', async () => {
  const committed = await fs.readFile(openapiFile, 'utf8');
  assert.equal(committed, generated);
});

test('the document is valid OpenAPI 3.1', async () => {
  assert.equal(document.openapi, '3.1.0');
  await SwaggerParser.validate(structuredClone(document) as never);
});

test('every operation has an operationId, a tag and a summary; operationIds are unique', () => {
  const ops = operations();
  assert.ok(ops.length >= 7, `found ${ops.length} operations`);
  const ids = new Set<string>();
  for (const [name, op] of ops) {
    assert.match(op.operationId ?? '', /^[a-z][A-Za-z]+$/, `${name} operationId`);
    assert.ok(!ids.has(op.operationId!), `${name}: duplicate operationId ${op.operationId}`);
    ids.add(op.operationId!);
    assert.ok((op.tags ?? []).length > 0, `${name} tag`);
    assert.ok((op.summary ?? '').length > 0, `${name} summary`);
  }
  assert.ok(!operations().some(([name]) => name.includes('/docs')), 'the docs UI is not an API operation');
});

test('every error response is a documented application/problem+json $ref to Problem', () => {
  for (const [name, op] of operations()) {
    const errors = Object.entries(op.responses).filter(([status]) => Number(status) >= 400);
    assert.ok(errors.length > 0, `${name} documents its errors`);
    for (const [status, response] of errors) {
      assert.ok(response.description, `${name} ${status} description`);
      assert.deepEqual(
        Object.keys(response.content ?? {}),
        ['application/problem+json'],
        `${name} ${status} content type`,
      );
      assert.equal(response.content!['application/problem+json']!.schema.$ref, '#/components/schemas/Problem', `${name} ${status}`);
    }
  }
  assert.ok(document.components.schemas.Problem);
});

test('/v1 operations need the bearer key and document 401 and a 4xx of their own; probes need none', () => {
  assert.deepEqual(document.components.securitySchemes.bearerAuth, {
    type: 'http',
    scheme: 'bearer',
    description: (document.components.securitySchemes.bearerAuth as { description?: string }).description,
  });
  assert.deepEqual(document.security, [{ bearerAuth: [] }]);
  for (const [name, op] of operations()) {
    if (name.includes(' /v1/')) {
      assert.equal(op.security, undefined, `${name} inherits the bearer requirement`);
      assert.ok(op.responses['401'], `${name} documents 401`);
      // Anything a caller sends (a path id, a query, a body) can be refused on its own account.
      const takesInput = name.includes('{') || (op as { parameters?: unknown[] }).parameters?.length || (op as { requestBody?: unknown }).requestBody;
      if (takesInput) {
        assert.ok(
          Object.keys(op.responses).some((s) => Number(s) >= 400 && Number(s) < 500 && s !== '401'),
          `${name} documents a 4xx besides 401`,
        );
      }
    } else {
      assert.deepEqual(op.security, [], `${name} needs no key`);
    }
  }
});

test('servers names where the service is reached, with the embedded default', () => {
  const servers = (document as unknown as { servers: Array<{ url: string; variables: Record<string, { default: string }> }> })
    .servers;
  assert.equal(servers.length, 1);
  const server = servers[0]!;
  const url = server.url.replace(/\{(\w+)\}/g, (_, name: string) => server.variables[name]!.default);
  assert.equal(url, 'http://127.0.0.1:3000');
});

test('a parameter or request field with a default is optional in the document', () => {
  const defaulted: string[] = [];
  const visit = (schema: unknown, where: string): void => {
    if (typeof schema !== 'object' || schema === null) return;
    const object = schema as { properties?: Record<string, { default?: unknown }>; required?: string[] };
    for (const [name, property] of Object.entries(object.properties ?? {})) {
      if ('default' in property) {
        defaulted.push(`${where}.${name}`);
        assert.ok(!(object.required ?? []).includes(name), `${where}: ${name} has a default, so it is not required`);
      }
      visit(property, `${where}.${name}`);
    }
    for (const value of Object.values(schema)) if (typeof value === 'object') visit(value, where);
  };
  for (const [name, op] of operations()) {
    const withBody = op as Operation & {
      parameters?: Array<{ name: string; required?: boolean; schema: { default?: unknown } }>;
      requestBody?: { content: Record<string, { schema: unknown }> };
    };
    for (const parameter of withBody.parameters ?? []) {
      if ('default' in parameter.schema) {
        defaulted.push(`${name} ${parameter.name}`);
        assert.notEqual(parameter.required, true, `${name}: ${parameter.name} has a default, so it is not required`);
      }
    }
    for (const media of Object.values(withBody.requestBody?.content ?? {})) visit(media.schema, name);
  }
  // limit on the five lists (caption history included), include_images, and the captioning-job options.
  assert.ok(defaulted.some((where) => where === 'GET /v1/datasets limit'), defaulted.join(', '));
  assert.ok(defaulted.some((where) => where.endsWith('include_images')), defaulted.join(', '));
  assert.ok(defaulted.some((where) => where === 'POST /v1/datasets/{id}/captioning-jobs.overwrite'), defaulted.join(', '));
});

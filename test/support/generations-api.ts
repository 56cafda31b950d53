// Generations through the app, for tests: generate and wait (Prefer: wait), and read an image's pixels.
import assert from 'node:assert/strict';
import sharp from 'sharp';
import type { TestApp } from '../helper.js';

/** Generates synchronously and returns the generation (asserting it succeeded). */
export async function generate(ctx: TestApp, payload: Record<string, unknown>): Promise<any> {
  const response = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: { ...ctx.auth, prefer: 'wait=60' }, payload });
  assert.equal(response.statusCode, 201, response.body);
  const generation = response.json();
  assert.equal(generation.status, 'succeeded', JSON.stringify(generation.error));
  return generation;
}

/** The RGB pixels of image `index` of a generation. */
export async function pixels(ctx: TestApp, id: string, index = 0): Promise<Buffer> {
  const response = await ctx.app.inject({ method: 'GET', url: `/v1/generations/${id}/images/${index}`, headers: ctx.auth });
  assert.equal(response.statusCode, 200);
  return sharp(response.rawPayload).raw().toBuffer();
}

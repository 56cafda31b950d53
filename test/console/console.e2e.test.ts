// The web console in a real Chromium against the real service (Postgres, the native
// engine, the demo model): a newcomer's whole path from an API key to an image made with
// their own LoRA, and the refusals a person must see. Screenshots of the main pages go to
// test-results/console/.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { test } from 'node:test';
import sharp from 'sharp';
import { withTestApp, type TestApp } from '../helper.js';
import type { Page } from 'playwright-core';
import {
  DESKTOP_VIEWPORT,
  ensureConsoleBuilt,
  openConsole,
  horizontalOverflow,
  PHONE_VIEWPORT,
  screenshot,
  signIn,
  unlabelledControls,
  until,
} from '../support/browser.js';

await ensureConsoleBuilt();

const DEMO_MODEL = 'sdxl-tiny-demo';

/** A made-up photo: sky, ground and a subject, in colours that differ by `i` (distinct bytes). */
function scenePhoto(i: number, size = 512): Promise<Buffer> {
  const hue = (i * 67) % 360;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
    <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="hsl(${hue},70%,75%)"/><stop offset="1" stop-color="hsl(${(hue + 40) % 360},60%,90%)"/>
    </linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#sky)"/>
    <rect y="${size * 0.68}" width="100%" height="${size * 0.32}" fill="hsl(${(hue + 120) % 360},35%,40%)"/>
    <ellipse cx="${size * (0.4 + 0.1 * i)}" cy="${size * 0.62}" rx="${size * 0.2}" ry="${size * 0.13}" fill="hsl(30,45%,${35 + i * 8}%)"/>
    <circle cx="${size * (0.58 + 0.1 * i)}" cy="${size * 0.47}" r="${size * 0.09}" fill="hsl(30,45%,${30 + i * 8}%)"/>
    <circle cx="${size * 0.82}" cy="${size * 0.18}" r="${size * 0.07}" fill="hsl(50,95%,70%)"/>
  </svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toBuffer();
}

/** At a phone's width the page scrolls only down (then back to the desktop size). */
async function fitsPhone(page: Page, what: string, screenshotName?: string): Promise<void> {
  await page.setViewportSize(PHONE_VIEWPORT);
  await page.evaluate(() => window.scrollTo(0, 0));
  // Two frames: what sizes itself on a ResizeObserver (the loss chart) has done so by then.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  assert.deepEqual(await horizontalOverflow(page), [], `${what} fits a phone`);
  if (screenshotName !== undefined) await screenshot(page, screenshotName, { fullPage: false });
  await page.setViewportSize(DESKTOP_VIEWPORT);
}

async function listen(ctx: TestApp): Promise<string> {
  return ctx.app.listen({ port: 0, host: '127.0.0.1' });
}

/** A dataset "Rex" (a dog) with one photo, made through the API. */
async function datasetWithPhoto(base: string, ctx: TestApp, photo: Buffer): Promise<{ id: string }> {
  const dataset = await (await fetch(`${base}/v1/datasets`, {
    method: 'POST', headers: { ...ctx.auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Rex', class_word: 'dog' }),
  })).json();
  const form = new FormData();
  form.append('files', new Blob([new Uint8Array(photo)], { type: 'image/jpeg' }), 'rex.jpg');
  assert.equal((await fetch(`${base}/v1/datasets/${dataset.id}/images`, { method: 'POST', headers: ctx.auth, body: form })).status, 201);
  return dataset;
}

async function apiGet(base: string, ctx: TestApp, url: string): Promise<any> {
  const response = await fetch(`${base}${url}`, { headers: ctx.auth });
  assert.equal(response.status, 200, `${url}: ${await response.clone().text()}`);
  return response.json();
}

test('a wrong API key is refused on the sign-in form and is not kept', async (t) => {
  const ctx = await withTestApp(t);
  const base = await listen(ctx);
  const { page, problems, requests } = await openConsole(t, base);
  await page.goto('/console/');
  const wrong = 'sdxl_this-key-does-not-exist-0000000000000000000';
  await page.getByLabel('API key').fill(wrong);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'This API key was not accepted' }).waitFor();
  await screenshot(page, 'sign-in-refused', { fullPage: false });
  assert.equal(await page.getByRole('heading', { name: 'Datasets', exact: true }).count(), 0);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not stored');
  assert.ok(requests.every((url) => !url.includes(wrong)), 'the key never goes into a URL');

  // The right key signs in, survives a reload (sessionStorage), and signing out forgets it.
  await page.getByLabel('API key').fill(ctx.apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Datasets', exact: true }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Datasets', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.ok(requests.every((url) => !url.includes(ctx.apiKey)), 'the key never goes into a URL');
  assert.deepEqual(problems, []);
});

test('refusals (picked or dropped files) are shown with the file they name, and the files that are fine are stored', async (t) => {
  const ctx = await withTestApp(t);
  const base = await listen(ctx);
  const { page, problems } = await openConsole(t, base);
  await signIn(page, ctx.apiKey);
  await page.getByLabel('Name').fill('Refusals');
  await page.getByLabel('Class word').fill('dog');
  await page.getByRole('button', { name: 'Create dataset' }).click();
  await page.getByRole('heading', { name: 'Add photos' }).waitFor();

  await page.getByLabel('Choose files…').setInputFiles([
    { name: 'notes.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\n') },
    { name: 'tiny.png', mimeType: 'image/png', buffer: await sharp({ create: { width: 40, height: 40, channels: 3, background: '#888' } }).png().toBuffer() },
    { name: 'good.jpg', mimeType: 'image/jpeg', buffer: await scenePhoto(1) },
  ]);
  const pdf = page.getByRole('alert').filter({ hasText: 'notes.pdf' });
  await pdf.waitFor();
  assert.match(await pdf.innerText(), /PDF/);
  assert.match(await page.getByRole('alert').filter({ hasText: 'tiny.png' }).innerText(), /40x40/);
  await page.getByText('1 of 3 uploaded, 2 refused').waitFor();

  // Dropped files take the same way: a GIF refused by name, a photo stored.
  const photo = (await scenePhoto(2)).toString('base64');
  const dropped = await page.evaluateHandle((base64) => {
    const transfer = new DataTransfer();
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
    transfer.items.add(new File([new TextEncoder().encode('GIF89a\x01\x00\x01\x00')], 'animation.gif', { type: 'image/gif' }));
    return transfer;
  }, photo);
  await page.locator('.dropzone').dispatchEvent('drop', { dataTransfer: dropped });
  await page.getByRole('alert').filter({ hasText: 'animation.gif' }).waitFor();
  await page.getByText('2 of 5 uploaded, 3 refused').waitFor();
  await screenshot(page, 'upload-refusals');

  // What the page says is what the API holds: the good photo only.
  const datasetId = new URL(page.url()).pathname.split('/').pop()!;
  const images = await apiGet(base, ctx, `/v1/datasets/${datasetId}/images`);
  assert.deepEqual(images.data.map((image: { original_filename: string }) => image.original_filename).sort(), ['dropped.jpg', 'good.jpg']);
  await page.getByRole('textbox', { name: 'Caption of good.jpg' }).waitFor();
  await page.getByRole('textbox', { name: 'Caption of dropped.jpg' }).waitFor();
  assert.deepEqual(problems, []);
});

test('a newcomer signs in, builds a dataset, trains a LoRA while watching it, downloads it and generates with it', { timeout: 300_000 }, async (t) => {
  const ctx = await withTestApp(t);
  const base = await listen(ctx);
  const { page, problems, requests } = await openConsole(t, base);
  await signIn(page, ctx.apiKey);

  // The keyboard starts at the skip link, then the sections.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');

  // ---- a dataset with three photos
  await page.getByLabel('Name').fill('Rex the dog');
  await page.getByLabel('Class word').fill('dog');
  await page.getByRole('button', { name: 'Create dataset' }).click();
  await page.getByRole('heading', { name: 'Rex the dog' }).waitFor();
  const datasetId = new URL(page.url()).pathname.split('/').pop()!;
  await page.getByLabel('Choose files…').setInputFiles(
    await Promise.all([0, 1, 2].map(async (i) => ({ name: `rex-${i}.jpg`, mimeType: 'image/jpeg', buffer: await scenePhoto(i) }))),
  );
  await page.getByText('3 of 3 uploaded').waitFor();
  await until('three thumbnails shown', async () => (await page.locator('img.thumb[data-loaded="true"]').count()) === 3);
  assert.equal(requests.filter((url) => url.includes('/content?variant=thumbnail')).length, 3, 'the grid asks for thumbnails');

  // ---- captions: the template captioner, then one edited by hand
  await page.getByLabel('Captioner').selectOption('template');
  await page.getByRole('button', { name: 'Caption all photos' }).click();
  const caption = page.getByRole('textbox', { name: 'Caption of rex-1.jpg' });
  await until('template captions in the grid', async () => (await caption.inputValue()) === 'a photo of ohwx dog');
  await page.getByRole('progressbar', { name: 'Captioning progress' }).waitFor();
  await caption.fill('a photo of ohwx dog on the grass');
  await page.getByRole('button', { name: 'Save caption of rex-1.jpg' }).click();
  await page.getByText('caption by manual').waitFor();
  await page.getByRole('button', { name: 'Caption history of rex-1.jpg' }).click();
  await page.getByRole('list', { name: 'Earlier captions of rex-1.jpg' }).getByText('a photo of ohwx dog on the grass').waitFor();
  const images = await apiGet(base, ctx, `/v1/datasets/${datasetId}/images`);
  const edited = images.data.find((image: { original_filename: string }) => image.original_filename === 'rex-1.jpg');
  const stored = await apiGet(base, ctx, `/v1/images/${edited.id}/caption`);
  assert.equal(stored.current.caption, 'a photo of ohwx dog on the grass');
  assert.equal(stored.current.source, 'manual');
  assert.deepEqual(await unlabelledControls(page), []);
  await screenshot(page, 'dataset');
  await fitsPhone(page, 'the dataset page', 'dataset-phone');

  // ---- a short run, watched live
  await page.getByRole('link', { name: 'Train a LoRA on this dataset' }).click();
  await page.getByRole('heading', { name: 'New training run' }).waitFor();
  assert.equal(await page.getByLabel('Dataset', { exact: true }).inputValue(), datasetId);
  await page.getByRole('radio', { name: 'Quick test' }).check();
  assert.equal(await page.getByLabel('Steps', { exact: true }).inputValue(), '20');
  assert.deepEqual(await unlabelledControls(page), []);
  await screenshot(page, 'new-run');
  await fitsPhone(page, 'the new-run form');
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForURL(/\/console\/runs\/tr_/);
  const runId = new URL(page.url()).pathname.split('/').pop()!;
  const chart = page.locator('figure.chart-figure');
  const points = await until('loss points on the chart', async () => {
    const count = Number(await chart.getAttribute('data-points'));
    return count >= 2 ? count : undefined;
  });
  assert.ok(points >= 2);
  await until('a validation image shown', async () => (await page.locator('img[alt^="Validation image"][data-loaded="true"]').count()) > 0);
  await page.locator('.status[data-status="succeeded"]').first().waitFor({ timeout: 120_000 });
  // One point per training report with a loss (about one a second), rebuilt from the replay.
  const reports = await apiGet(base, ctx, `/v1/training-runs/${runId}/events?type=progress&limit=1000`);
  const losses = reports.data.filter((event: { data: { phase: string; loss: number | null } }) =>
    event.data.phase === 'training' && typeof event.data.loss === 'number');
  assert.equal(Number(await chart.getAttribute('data-points')), losses.length);
  await page.getByRole('button', { name: 'Download LoRA' }).waitFor();
  await until('every validation image shown', async () => {
    const shown = page.locator('img[alt^="Validation image"]');
    return (await shown.count()) === 3 && (await page.locator('img[alt^="Validation image"][data-loaded="true"]').count()) === 3;
  });
  await screenshot(page, 'run');
  await fitsPhone(page, 'the run page', 'run-phone');

  // ---- the LoRA, downloaded: the bytes the API lists
  const artifacts = await apiGet(base, ctx, `/v1/training-runs/${runId}/artifacts`);
  const lora = artifacts.data.find((artifact: { kind: string }) => artifact.kind === 'lora');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download LoRA' }).click()]);
  assert.match(download.suggestedFilename(), /\.safetensors$/);
  const bytes = fs.readFileSync((await download.path())!);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), lora.sha256);

  // ---- an image made with it
  await page.getByRole('link', { name: 'Generate with this LoRA' }).click();
  await page.getByRole('heading', { name: 'Generate', exact: true }).waitFor();
  await page.getByRole('slider', { name: /^Scale of / }).waitFor();
  await page.getByLabel('Prompt', { exact: true }).fill('a photo of ohwx dog on the grass');
  await page.getByLabel('Steps', { exact: true }).fill('4');
  await page.getByLabel('Seed', { exact: true }).fill('7');
  assert.deepEqual(await unlabelledControls(page), []);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const made = page.locator('img[alt="a photo of ohwx dog on the grass (seed 7)"][data-loaded="true"]');
  await made.first().waitFor({ timeout: 120_000 });
  const generations = await apiGet(base, ctx, '/v1/generations');
  const generation = generations.data[0];
  assert.equal(generation.status, 'succeeded');
  assert.equal(generation.params.seed, 7);
  assert.deepEqual(generation.loras.map((used: { sha256: string; scale: number }) => [used.sha256, used.scale]), [[lora.sha256, 1]]);
  await screenshot(page, 'generate');
  await fitsPhone(page, 'the generate page', 'generate-phone');

  assert.deepEqual(problems, [], 'no Content-Security-Policy violation and no uncaught error');
  assert.ok(requests.every((url) => !url.includes(ctx.apiKey)), 'the key never goes into a URL');
});

test("the run and generate forms follow the base model's family: clip skip for SD 1.x, the second text-encoder rate for SDXL; a run's devices", async (t) => {
  const ctx = await withTestApp(t, { env: { TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  const base = await listen(ctx);
  const { page, problems } = await openConsole(t, base);
  await signIn(page, ctx.apiKey);
  const dataset = await datasetWithPhoto(base, ctx, await scenePhoto(0));

  // ---- the new-run form: the SDXL demo first, then the SD 1.5 one
  await page.goto(`/console/runs/new?dataset=${dataset.id}`);
  await page.getByRole('heading', { name: 'New training run' }).waitFor();
  const model = page.getByLabel('Base model');
  await model.waitFor(); // the form shows once the datasets and models have loaded
  assert.deepEqual((await model.locator('option').allInnerTexts()).slice(0, 2), ['sdxl-tiny-demo (SDXL, demo)', 'sd15-tiny-demo (SD 1.x, demo)']);
  await page.getByText('Advanced settings').click();
  const clipSkip = page.getByLabel('Clip skip', { exact: true });
  const secondRate = page.getByLabel('Second text-encoder learning rate', { exact: true });
  await secondRate.waitFor();
  assert.equal(await clipSkip.count(), 0, 'no clip skip for SDXL');
  await model.selectOption('sd15-tiny-demo');
  await clipSkip.waitFor();
  assert.equal(await secondRate.count(), 0, 'one text encoder: no second rate');
  assert.equal(await clipSkip.getAttribute('max'), '3', "the model's clip_skip_max");
  assert.equal(await page.getByLabel('Resolution', { exact: true }).getAttribute('max'), '128', "the model's default_resolution");
  await clipSkip.fill('2');
  // Two devices (a batch of two, one image each); no worker runs here, so the run waits and says so.
  const devices = page.getByLabel('Devices (GPUs)', { exact: true });
  assert.equal(await devices.inputValue(), '1', 'one device by default');
  await devices.fill('2');
  await page.getByLabel('Batch size', { exact: true }).fill('2');
  assert.deepEqual(await unlabelledControls(page), []);
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForURL(/\/console\/runs\/tr_/);
  const run = await apiGet(base, ctx, `/v1/training-runs/${new URL(page.url()).pathname.split('/').pop()}`);
  assert.deepEqual([run.model, run.params.clip_skip, run.params.text_encoder_2_lr, run.params.devices], ['sd15-tiny-demo', 2, null, 2]);
  await page.getByText('waiting for a training worker: none is running').waitFor();
  assert.equal(await page.locator('dt:text-is("Devices") + dd').innerText(), '2');

  // ---- the generate form: clip skip for the SD 1.5 demo only
  await page.goto('/console/generate');
  const generateModel = page.getByLabel('Base model');
  await generateModel.selectOption('sd15-tiny-demo');
  await clipSkip.waitFor();
  assert.equal(await clipSkip.getAttribute('max'), '3');
  assert.deepEqual(await unlabelledControls(page), []);
  await generateModel.selectOption('sdxl-tiny-demo');
  await until('the clip skip field gone', async () => (await clipSkip.count()) === 0);
  assert.deepEqual(problems, []);
});

test('"Full fine-tune" in the new-run form: its own presets and params; the model it trains joins the model pickers', async (t) => {
  const ctx = await withTestApp(t, { env: { GENERATION_SLOTS: '0' } });
  const base = await listen(ctx);
  const { page, problems } = await openConsole(t, base);
  await signIn(page, ctx.apiKey);
  const dataset = await datasetWithPhoto(base, ctx, await scenePhoto(1, 256));

  await page.goto(`/console/runs/new?dataset=${dataset.id}`);
  await page.getByRole('heading', { name: 'New training run' }).waitFor();
  await page.getByLabel('Rank', { exact: true }).waitFor(); // a LoRA run has a rank (the form is there once its models loaded)
  await page.getByRole('radio', { name: 'Full fine-tune' }).check();
  await page.getByRole('radio', { name: 'DreamBooth (person or pet)' }).waitFor();
  assert.equal(await page.getByRole('radio', { name: 'Likeness (person or pet)' }).count(), 0, "the LoRA presets are not a full run's");
  assert.ok(await page.getByRole('radio', { name: 'Quick test' }).isChecked(), 'the quick test on a demo model');
  assert.equal(await page.getByLabel('Steps', { exact: true }).inputValue(), '10');
  assert.equal(await page.getByLabel('Rank', { exact: true }).count(), 0, 'no rank on a full run');
  await page.getByText('Advanced settings').click();
  await page.getByLabel('EMA decay', { exact: true }).waitFor();
  assert.ok(await page.getByLabel('Use prior preservation').isChecked(), "prior preservation is on by default for a full run");
  assert.equal(await page.getByLabel('Also save the peft/diffusers layout').count(), 0);
  await page.getByLabel('Resolution', { exact: true }).fill('64');
  assert.deepEqual(await unlabelledControls(page), []);
  await fitsPhone(page, 'the new-run form of a full fine-tune');
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.waitForURL(/\/console\/runs\/tr_/);
  const runId = new URL(page.url()).pathname.split('/').pop()!;
  const queued = await apiGet(base, ctx, `/v1/training-runs/${runId}`);
  assert.deepEqual(
    [queued.params.method, queued.params.max_steps, queued.params.rank, queued.params.prior_preservation.num_class_images, queued.params.learning_rate],
    ['full', 10, null, 4, 5e-6],
  );
  await page.locator('.status[data-status="succeeded"]').first().waitFor({ timeout: 120_000 });
  const run = await apiGet(base, ctx, `/v1/training-runs/${runId}`);
  const modelId = run.output.model_id as string;
  await page.getByText(modelId).waitFor();
  await page.getByText('Peak memory').waitFor();

  // The model pickers: the new run's and the generate form's list the tenant's model after the server's.
  const label = `${run.name ?? modelId} (SDXL, yours${run.name === null ? '' : `: ${modelId}`})`;
  await page.getByRole('link', { name: 'Generate with this model' }).click();
  const generateModel = page.getByLabel('Base model');
  await until('the trained model chosen', async () => (await generateModel.inputValue()) === modelId);
  assert.ok((await generateModel.locator('option').allInnerTexts()).includes(label));
  await page.goto(`/console/runs/new?dataset=${dataset.id}`);
  const runModel = page.getByLabel('Base model');
  await until('the model listed', async () => (await runModel.locator('option').allInnerTexts()).at(-1) === label);
  assert.deepEqual(problems, []);
});

test('the photo grid of a large dataset renders only the rows on screen and the rest as it is scrolled to; the count is the dataset\'s', async (t) => {
  const ctx = await withTestApp(t, { env: { IMAGE_MIN_SIDE: '64', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  const base = await listen(ctx);
  const { page, problems } = await openConsole(t, base);
  await signIn(page, ctx.apiKey);
  const dataset = await (await fetch(`${base}/v1/datasets`, {
    method: 'POST', headers: { ...ctx.auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Many', class_word: 'dog' }),
  })).json();
  const form = new FormData();
  for (let i = 0; i < 60; i++) {
    const photo = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: i * 4, g: 255 - i * 4, b: (i * 37) % 256 } } }).jpeg().toBuffer();
    form.append('files', new Blob([new Uint8Array(photo)], { type: 'image/jpeg' }), `photo-${i}.jpg`);
  }
  assert.equal((await fetch(`${base}/v1/datasets/${dataset.id}/images`, { method: 'POST', headers: ctx.auth, body: form })).status, 201);
  const listed = (await apiGet(base, ctx, `/v1/datasets/${dataset.id}/images?limit=100`)).data as Array<{ original_filename: string }>;
  const [newest, oldest] = [listed[0]!.original_filename, listed.at(-1)!.original_filename];

  await page.goto(`/console/datasets/${dataset.id}`);
  await page.getByRole('heading', { name: 'Photos (60)' }).waitFor();
  const cards = page.locator('ul.image-grid li.image-card');
  const caption = (name: string) => page.getByRole('textbox', { name: `Caption of ${name}` });
  await caption(newest).waitFor();
  const rendered = await cards.count();
  assert.ok(rendered > 0 && rendered < 60, `a window of the 60 photos is in the page (${rendered})`);
  assert.equal(await caption(oldest).count(), 0);
  assert.equal(await cards.first().getAttribute('aria-setsize'), '60');

  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await caption(oldest).waitFor();
  assert.equal(await caption(newest).count(), 0, 'the rows scrolled past are out of the page');
  assert.ok((await cards.count()) < 60);
  await fitsPhone(page, 'the windowed grid');
  assert.deepEqual(problems, []);
  // Closed before the app: a socket Chromium opened ahead for the many thumbnails and never
  // used is not idle to Node, and would hold app.close() for the 72 s keep-alive timeout.
  await page.context().close();
});

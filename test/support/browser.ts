// A real browser for the console's tests: Debian's Chromium (apt-get install chromium)
// driven by playwright-core, a served app with the console built, and screenshots kept
// under test-results/console/ for people to look at.
import { after, type TestContext } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { consoleDir, projectRoot } from '../../src/paths.js';
import { buildConsole } from '../../scripts/build-console.js';

/** CHROMIUM_PATH, else Debian's. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join(projectRoot, 'test-results', 'console');
export const PHONE_VIEWPORT = { width: 390, height: 844 };
export const DESKTOP_VIEWPORT = { width: 1280, height: 900 };

let built: Promise<void> | undefined;

/** The console as npm test builds it; built here when a single test file runs alone. */
export function ensureConsoleBuilt(): Promise<void> {
  built ??= fs.existsSync(path.join(consoleDir, 'index.html')) ? Promise.resolve() : buildConsole().then(() => undefined);
  return built;
}

let browser: Promise<Browser> | undefined;

/** One Chromium per test file, closed when the file ends. */
export function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: apt-get install chromium (or set CHROMIUM_PATH)`);
  }
  browser ??= chromium.launch({ executablePath: CHROMIUM_PATH });
  return browser;
}

after(async () => {
  if (browser !== undefined) await (await browser).close();
});

export interface ConsolePage {
  page: Page;
  context: BrowserContext;
  /** Messages the page logged about its Content-Security-Policy, and its uncaught errors. */
  problems: string[];
  /** Every URL the page requested. */
  requests: string[];
}

/** A fresh browser context (its own sessionStorage) on a page, closed after the test. */
export async function openConsole(t: TestContext, baseUrl: string, viewport = DESKTOP_VIEWPORT): Promise<ConsolePage> {
  const context = await (await launchBrowser()).newContext({ viewport, acceptDownloads: true, baseURL: baseUrl });
  t.after(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const problems: string[] = [];
  const requests: string[] = [];
  page.on('console', (message) => {
    if (/content security policy/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('request', (request) => requests.push(request.url()));
  return { page, context, problems, requests };
}

/** Saves a screenshot as test-results/console/<name>.png. */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<void> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: options.fullPage ?? true, animations: 'disabled' });
}

/** Signs in through the form. */
export async function signIn(page: Page, apiKey: string): Promise<void> {
  await page.goto('/console/');
  await page.getByLabel('API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Datasets', exact: true }).waitFor();
}

/** Form controls with no accessible name (no <label>, aria-label or aria-labelledby): should be none. */
export function unlabelledControls(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea, button')]
      .filter((element) => !(element instanceof HTMLInputElement && element.type === 'hidden'))
      .filter((element) => {
        const labels = (element as HTMLInputElement).labels;
        const named = element.getAttribute('aria-label') ?? element.getAttribute('aria-labelledby');
        const text = element instanceof HTMLButtonElement ? element.textContent?.trim() : '';
        return (labels === null || labels.length === 0) && !named && !text;
      })
      .map((element) => element.outerHTML.slice(0, 120)),
  );
}

/**
 * What makes the page wider than the window (a phone would scroll sideways): the elements
 * reaching past its right edge, innermost first; none when it fits.
 */
export function horizontalOverflow(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    if (document.documentElement.scrollWidth <= window.innerWidth + 1) return [];
    return [...document.querySelectorAll('body *')]
      .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1)
      .reverse()
      .slice(0, 5)
      .map((element) => `${element.outerHTML.slice(0, 160)} (right edge ${Math.round(element.getBoundingClientRect().right)})`);
  });
}

/** Waits until `check` returns a value other than undefined/false, polling; fails with `what` after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { buildPlayground } from '../../scripts/build-playground.mjs';

/**
 * Debian's Chromium (`apt-get install chromium`; scripts/install-test-packages.sh installs it), driven by
 * playwright-core. A machine without it fails the browser tests, never skips them.
 */
export const CHROMIUM = process.env.ASSISTD_TEST_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Flags for a headless Chromium started as root on a machine with no internet: no sandbox (root), and none of its
 * background connections (updates, sync, field trials), which this network refuses and which a test must not make.
 */
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

let built: Promise<string> | undefined;

/** The playground bundled (once per test process), as `npm run build` does: the server serves dist/playground. */
export function buildPlaygroundOnce(): Promise<string> {
  built ??= buildPlayground();
  return built;
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run scripts/install-test-packages.sh (it installs Debian's chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/**
 * A page of a fresh context (its own session storage), on a narrow or wide window, that records every request it
 * makes to another origin than `origin`: the playground must make none.
 */
export async function openPage(
  browser: Browser,
  origin: string,
  viewport = { width: 1280, height: 860 },
): Promise<{ page: Page; foreign: string[] }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const foreign: string[] = [];
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) foreign.push(url);
  });
  return { page, foreign };
}

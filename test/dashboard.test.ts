// The dashboard in a real browser (Debian's Chromium, driven by playwright-core) against a real
// running campaign: it is listed, its chart renders, and the buttons pause, resume, steer and stop
// it, each checked through the workflow's own status query. Screenshots go to test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { campaignWorkflowId, type CampaignSnapshot } from '../common/shared';
import { statusQuery } from '../workflows/messages';
import { uiLink } from '../client/campaigns';
import { startDashboard, type Dashboard } from '../dashboard/server';
import { connectClient } from '../ops/connection';
import { ADDRESS, lab, makeRepo, ROOT, tempDir, waitFor } from './helpers';

const CHROMIUM = process.env.NIGHTLAB_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

function inFlight(s: CampaignSnapshot): unknown[] {
  const list = (s as { inFlight?: unknown[] }).inFlight;
  return Array.isArray(list) ? list : s.current ? [s.current] : [];
}

function assertChromium(): void {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is missing at ${CHROMIUM}: the dashboard tests drive a real browser; install it with \`apt-get install -y chromium\` (as root; CI's .ci/run does this)`,
  );
}

async function launch(): Promise<BrowserContext> {
  assertChromium();
  return chromium.launchPersistentContext(tempDir('nightlab-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent()) ?? '';
}

test(
  'the dashboard lists a running campaign, draws its chart, and pauses, resumes, steers and stops it',
  { timeout: 240_000 },
  async () => {
    assertChromium();
    mkdirSync(ARTIFACTS, { recursive: true });
    const l = await lab();
    let dash: Dashboard | null = null;
    let browser: BrowserContext | null = null;
    let tag: string | null = null;
    try {
      const repo = await makeRepo();
      const c = await l.start(repo, {
        budget: { maxExperiments: 500 },
        run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.5' }, timeoutSec: 60 },
      });
      tag = c.tag;
      const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
      const status = () => handle.query(statusQuery);
      dash = await startDashboard({ client: l.client, port: 0 });

      // The API refuses a control request that is not JSON from this page (a cross-site form post).
      const refused = await fetch(`${dash.url}api/campaigns/${c.tag}/stop`, {
        method: 'POST',
        body: 'x=1',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      assert.equal(refused.status, 415);
      const foreign = await fetch(`${dash.url}api/campaigns/${c.tag}/pause`, {
        method: 'POST',
        body: '{}',
        headers: { 'content-type': 'application/json', origin: 'http://evil.example' },
      });
      assert.equal(foreign.status, 403);

      browser = await launch();
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('dialog', (d) => void d.accept()); // the Stop button asks first
      await page.goto(`${dash.url}#/${c.tag}`);

      // Listed from Temporal visibility, selected, with the Web UI link.
      await page.locator(`#campaigns li[data-tag="${c.tag}"]`).waitFor({ timeout: 30_000 });
      await waitFor('the campaign shown', async () => (await text(page, '#tag')) === c.tag, 30_000);
      assert.equal(await page.locator('#ui-link').getAttribute('href'), uiLink(c.tag, 'default'));

      // The chart: Vega draws an SVG with a dot per experiment, updated as experiments finish.
      await waitFor('three experiments', async () => (await status()).experiments >= 3, 60_000);
      await waitFor(
        'the chart with every finished experiment',
        async () => {
          // Data marks only (the legend draws symbols too).
          const dots = await page.locator('#chart svg g.mark-symbol.role-mark path').count();
          return dots >= 4 && dots;
        },
        30_000,
      );
      assert.match(await text(page, '#chart svg'), /val_bpb \(lower is better\)/);
      await waitFor('the results table', async () => (await page.locator('#results tbody tr').count()) >= 4, 15_000);
      // An experiment's view: its diff from git and its log tail, from the API, then in the page.
      const DIFF = /@@[\s\S]*\n[+-][A-Z_]+ = /;
      // Experiment 1 may still be confirming while later ones are recorded: wait for its row.
      const one = await waitFor(
        'experiment 1 recorded',
        async () => {
          const r = await fetch(`${dash!.url}api/campaigns/${c.tag}/experiments/1`);
          return r.status === 404 ? null : ((await r.json()) as { diff: string });
        },
        120_000,
      );
      assert.match(one.diff, DIFF, `the API's diff of experiment 1: ${JSON.stringify(one).slice(0, 2000)}`);
      // A row opens the experiment. (The table is re-rendered as experiments finish: a click that
      // lands on a row just replaced is lost, so the row is clicked again until its experiment shows.)
      let shown = '';
      await waitFor(
        'the diff of experiment 1',
        async () => {
          const [title, diff] = [await text(page, '#experiment-title'), await text(page, '#experiment-diff')];
          shown = `${title} | ${await text(page, '#experiment-meta')} | ${diff.slice(0, 500)} | error: ${await text(page, '#error')}`;
          if (/^experiment 1:/.test(title) && DIFF.test(diff)) return true;
          await page
            .locator('#results tbody tr[data-experiment="1"]')
            .click({ timeout: 5_000 })
            .catch((e: Error) => (shown += ` | click: ${e.message.split('\n')[0]}`));
          await new Promise((r) => setTimeout(r, 1000));
          return false;
        },
        45_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; the page showed: ${shown}`);
      });
      assert.match(await text(page, '#experiment-log'), /val_bpb:/);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-running.png'), fullPage: true });

      // Pause: the workflow says paused; the page says so too.
      await page.locator('#pause').click();
      // Paused once nothing trains and the count and message hold still (a proposal made before the
      // pause may wait, queued, in flight).
      let last = '';
      const paused = await waitFor(
        'paused, nothing training',
        async () => {
          const s = await status();
          const key = JSON.stringify([s.state, s.experiments, s.message, inFlight(s)]);
          const settled = s.state === 'paused' && s.current === null && key === last;
          last = key;
          if (!settled) await new Promise((r) => setTimeout(r, 1000));
          return settled && s;
        },
        60_000,
      );
      await waitFor('the page shows paused', async () => (await text(page, '#state')) === 'paused', 15_000);
      assert.ok(await page.locator('#resume').isEnabled());

      // Steer (while paused, so the message stays put): the note reaches the workflow.
      const note = `try smaller widths ${Date.now()}`;
      await page.locator('#note').fill(note);
      await page.locator('#steer').click();
      await waitFor(
        'the steer acknowledged',
        async () => /steered: 1 note/.test(await text(page, '#control-result')),
        15_000,
      );
      assert.equal((await status()).message, `steered: ${note}`);
      await waitFor('the page shows the steer', async () => (await text(page, '#message')).includes(note), 15_000);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-paused.png'), fullPage: true });
      assert.equal((await status()).experiments, paused.experiments, 'nothing ran while paused');

      // Resume: experiments go on.
      await page.locator('#resume').click();
      await waitFor(
        'progress after resume',
        async () => (await status()).experiments >= paused.experiments + 2,
        60_000,
      );
      await waitFor('the page shows running', async () => (await text(page, '#state')) === 'running', 15_000);

      // Stop: the campaign ends as stopped, and the page says so.
      await page.locator('#stop').click();
      const final = await c.result();
      assert.equal(final.state, 'stopped');
      assert.ok(final.experiments < 500);
      await waitFor('the page shows stopped', async () => (await text(page, '#state')) === 'stopped', 15_000);
      const view = (await (await fetch(`${dash.url}api/campaigns/${c.tag}`)).json()) as { ended: boolean };
      assert.equal(view.ended, true, 'the server says the campaign has ended: the page keeps no list of ended states');
      const again = await fetch(`${dash.url}api/campaigns/${c.tag}/pause`, {
        method: 'POST',
        body: '{}',
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(again.status, 409, 'an ended campaign takes no control');
      assert.ok(await page.locator('#pause').isDisabled(), 'no controls on an ended campaign');
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-stopped.png'), fullPage: true });
      assert.deepEqual(errors, [], 'no script errors on the page');
    } finally {
      await browser?.close();
      await dash?.close();
      // A failed run leaves no campaign running on the shared server.
      if (tag)
        await l.client.workflow
          .getHandle(campaignWorkflowId(tag))
          .terminate('dashboard test ended')
          .catch(() => undefined);
      await l.close();
    }
  },
);

/** A GET with headers of our choosing (fetch will not set Host): the status and the cookie set. */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; cookie: string | null }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0] ?? null }));
      })
      .on('error', reject);
  });
}

test('off loopback the dashboard needs its token (query, then cookie, or header); on loopback none', async () => {
  const client = await connectClient(ADDRESS);
  const open = await startDashboard({ client, port: 0, host: '0.0.0.0' });
  const local = await startDashboard({ client, port: 0 });
  try {
    const token = open.token!;
    assert.match(token, /^[\w-]{32}$/);
    assert.equal(new URL(open.url).searchParams.get('token'), token, 'the URL carries it');
    const api = `http://127.0.0.1:${open.port}/api/campaigns`;
    // Another machine names this one in its Host header: refused for want of a token, not for its name.
    const remote = { host: `10.20.30.40:${open.port}` };
    assert.equal((await get(api, remote)).status, 403);
    assert.equal((await get(`${api}?token=${token.slice(1)}x`, remote)).status, 403, 'a wrong token');
    const first = await get(`http://127.0.0.1:${open.port}/?token=${token}`, remote);
    assert.equal(first.status, 200);
    assert.equal(first.cookie, `nightlab-token-${open.port}=${token}; HttpOnly; SameSite=Strict; Path=/`);
    assert.equal(
      (await get(api, { ...remote, cookie: `other=1; ${first.cookie!.split(';')[0]}` })).status,
      200,
      'then the cookie',
    );
    assert.equal((await get(api, { ...remote, authorization: `Bearer ${token}` })).status, 200, 'or a header');
    assert.equal(
      (await get(`${api}?token=${token}`, { ...remote, cookie: `nightlab-token-${open.port}=stale` })).status,
      200,
    );

    // Loopback, the default: no token, no cookie; a foreign Host header (DNS rebinding) is refused.
    assert.equal(local.token, null);
    assert.equal(local.url, `http://127.0.0.1:${local.port}/`);
    const mine = await get(`http://127.0.0.1:${local.port}/api/campaigns`);
    assert.deepEqual(mine, { status: 200, cookie: null });
    assert.equal(
      (await get(`http://127.0.0.1:${local.port}/api/campaigns`, { host: `evil.example:${local.port}` })).status,
      403,
    );
  } finally {
    await open.close();
    await local.close();
    await client.connection.close();
  }
});

import { test, expect, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADMIN_EMAIL, ADMIN_PASSWORD } from './helpers';

// Issue 12's must-show, through the page: 200 tenants pasted into the tenants
// page's Bulk import while provisioning runs in a separate `worker` process that
// is killed with SIGKILL mid-batch; a second worker takes over (the killed one's
// running jobs come back through the rescuer). Every tenant is provisioned once
// (200 active, 200 tenant databases, one welcome email each), and the admin sees
// ONE toast for the batch with the right counts. Before any worker runs, the
// batch's completion job is on the dashboard's Awaiting tab, not in Scheduled.
//
// The suite's main server runs an embedded worker, so this test starts a server
// of its own with WORKER=off (as mailbox.spec.ts does) and the workers beside it.
const TARGET = process.env.CARGO_TARGET_DIR ?? '../target';
const SERVER_BIN = process.env.SERVER_BIN ?? path.join(TARGET, 'debug', 'server');
const WORKER_BIN = process.env.WORKER_BIN ?? path.join(path.dirname(SERVER_BIN), 'worker');
const SITE_ROOT = process.env.SITE_ROOT ?? path.join(TARGET, 'site');
const TENANTS = 200;

let dir = '';
let env: NodeJS.ProcessEnv = {};
let server: ChildProcess | undefined;
let url = '';
const workers: ChildProcess[] = [];
const logs: Record<string, string> = {};

/** Starts `bin` on the test's database with its output kept under `name`. */
function start(bin: string, name: string): ChildProcess {
  const child = spawn(bin, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  logs[name] = '';
  child.stdout?.on('data', (d) => (logs[name] += d.toString()));
  child.stderr?.on('data', (d) => (logs[name] += d.toString()));
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

test.beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulk-kill-e2e-'));
  env = {
    PATH: process.env.PATH,
    BIND_ADDR: '127.0.0.1:0',
    DATABASE_URL: `sqlite://${path.join(dir, 'app.db')}`,
    DATA_DIR: path.join(dir, 'data'),
    SITE_ROOT,
    SUPERADMIN_EMAIL: ADMIN_EMAIL,
    SUPERADMIN_PASSWORD: ADMIN_PASSWORD,
    // Provisioning only in the workers started below.
    WORKER: 'off',
    WORKER_CONCURRENCY: '8',
    // Each provisioning step takes 20 ms more, so the batch lasts long enough
    // to be killed in the middle of.
    PROVISION_FAULT: 'slow:20',
    RUST_LOG: 'info',
  };
  server = start(SERVER_BIN, 'server');
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${logs.server}`)), 60_000);
    server?.stdout?.on('data', () => {
      const m = logs.server.match(/Back office listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server?.on('exit', (code) => reject(new Error(`the server exited with ${code}:\n${logs.server}`)));
  });
});

test.afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  server?.kill('SIGTERM');
  await Promise.all([...workers, ...(server ? [server] : [])].map(exited));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** "12 of 200 ended: …" → 12. */
async function ended(page: Page): Promise<number> {
  const text = (await page.getByTestId('batch-counts').textContent()) ?? '';
  return Number(text.match(/^(\d+) of/)?.[1] ?? 0);
}

test.setTimeout(120_000);

test('200 tenants through the page with a worker killed mid-batch: each provisioned once, one toast', async ({
  page,
}) => {
  const stamp = Date.now().toString(36);
  const emails = Array.from({ length: TENANTS }, (_, i) => `owner${i}.${stamp}@kill.test`);
  const csv = ['name,admin email', ...emails.map((e, i) => `"Killed Worker Co ${i}, ${stamp}",${e}`)].join('\n');

  await page.goto(`${url}/login`);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${url}/admin/tenants`);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });

  await page.getByTestId('import-csv').fill(csv);
  await page.getByRole('button', { name: 'Import tenants' }).click();
  await expect(page.getByTestId('import-started')).toBeVisible();
  const progress = page.getByTestId('batch-progress');
  await expect(progress).toBeVisible();
  await expect(page.getByTestId('batch-counts')).toHaveText(
    `0 of ${TENANTS} ended: 0 succeeded, 0 failed, 0 deleted, ${TENANTS} pending`,
  );

  // No worker runs yet: the batch's completion job is awaiting its members, on
  // the dashboard's Awaiting tab and not among the scheduled jobs, and "Trigger
  // now" cannot start it early.
  const dash = await page.context().newPage();
  await dash.goto(`${url}/hangfire/jobs/awaiting`);
  await expect(dash.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
  await expect(dash.getByTestId('nav-awaiting')).toHaveAttribute('aria-current', 'page');
  await expect(dash.getByTestId('count-awaiting')).toHaveText('1');
  await expect(dash.getByTestId('count-scheduled')).toHaveText('0');
  await expect(dash.getByTestId('count-enqueued')).toHaveText(String(TENANTS));
  const row = dash.getByTestId('job-row');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('tenants.import_done');
  await row.getByRole('link').click();
  await expect(dash.getByTestId('job-state')).toHaveText('awaiting');
  await expect(dash.getByTestId('job-due')).toHaveText('when what it waits for has ended');
  await expect(dash.getByTestId('job-completes-batch')).toHaveText(/^Runs once every job of batch #\d+ has ended$/);
  await dash.getByRole('button', { name: 'Trigger now' }).click();
  await expect(dash.getByTestId('job-message')).toContainText('it is awaiting (it waits for another job to end');
  await expect(dash.getByTestId('job-state')).toHaveText('awaiting');
  await dash.goto(`${url}/hangfire/jobs/scheduled`);
  await expect(dash.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
  await expect(dash.getByText('No jobs here.')).toBeVisible();
  await dash.close();

  const first = start(WORKER_BIN, 'worker-a');
  workers.push(first);

  // SIGKILL the only worker once a tenth of the batch has ended: it is running
  // jobs then (8 at a time), and most of the batch is still to do.
  await expect.poll(() => ended(page), { timeout: 60_000, intervals: [50] }).toBeGreaterThanOrEqual(TENANTS / 10);
  first.kill('SIGKILL');
  await exited(first);
  expect(first.signalCode).toBe('SIGKILL');
  const atKill = await ended(page);
  expect(atKill, 'killed mid-batch').toBeLessThan(TENANTS);
  // Nothing runs the batch now; a second worker takes it over, including the
  // jobs the first one was running when it died (its process is gone: the
  // rescuer puts them back at once, not a lease later).
  workers.push(start(WORKER_BIN, 'worker-b'));

  await expect(progress).toHaveAttribute('data-state', 'finished', { timeout: 60_000 });
  await expect(page.getByTestId('batch-counts')).toHaveText(
    `${TENANTS} of ${TENANTS} ended: ${TENANTS} succeeded, 0 failed, 0 deleted, 0 pending`,
  );

  // One toast for the batch, counting the tenants by status. Notifications
  // reach the page in the order they were written and every member ended
  // before the batch did, so a per-tenant toast would be on the page already.
  const toast = page.getByTestId('toast').filter({ hasText: `${TENANTS} tenants: ${TENANTS} active, 0 failed` });
  await expect(toast).toBeVisible({ timeout: 20_000 });
  await expect(page.getByTestId('toast')).toHaveCount(1);

  // Each tenant provisioned once: one database each, no more.
  const tenantDbs = fs.readdirSync(path.join(dir, 'data', 'tenants')).filter((f) => f.endsWith('.db'));
  expect(tenantDbs).toHaveLength(TENANTS);
  // One welcome email each (activation commits once; a re-run finds the tenant
  // active). The mail jobs run on after the batch: wait for all of them.
  const mailDir = path.join(dir, 'data', 'mail');
  const recipients = (): string[] =>
    fs.existsSync(mailDir)
      ? fs
          .readdirSync(mailDir)
          .filter((f) => f.endsWith('.eml'))
          .map((f) => fs.readFileSync(path.join(mailDir, f), 'utf8').match(/^To: (.*)$/m)?.[1]?.trim() ?? '')
      : [];
  await expect.poll(() => recipients().length, { timeout: 30_000 }).toBe(TENANTS);
  expect(new Set(recipients())).toEqual(new Set(emails));

  // The jobs the killed worker was running were taken back by the second one's
  // rescuer (and, above, each still made one tenant).
  expect(logs['worker-b']).toMatch(/rescued jobs whose worker stopped renewing its lease/);
  expect(logs['worker-b']).not.toContain('panicked');
  console.log(`bulk import through the page: worker A killed with ${atKill} of ${TENANTS} ended`);
});

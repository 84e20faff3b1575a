import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADMIN_EMAIL, ADMIN_PASSWORD, open, signIn, unique } from './helpers';

// Item 7: with the default file transport (no SMTP_URL), the super admin reads
// the emails the product wrote at /admin/mail, decoded, links clickable; the log
// line after writing one names that page. The suite's main server sends through
// SMTP, so this test starts a second server of its own, the way a newcomer runs it.
const SERVER_BIN = process.env.SERVER_BIN ?? path.join(process.env.CARGO_TARGET_DIR ?? '../target', 'debug', 'server');
const SITE_ROOT = process.env.SITE_ROOT ?? path.join(process.env.CARGO_TARGET_DIR ?? '../target', 'site');

let server: ChildProcess | undefined;
let url = '';
let log = '';
let dir = '';

test.beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailbox-e2e-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    BIND_ADDR: '127.0.0.1:0',
    DATABASE_URL: `sqlite://${path.join(dir, 'app.db')}`,
    DATA_DIR: path.join(dir, 'data'),
    SITE_ROOT,
    SUPERADMIN_EMAIL: ADMIN_EMAIL,
    SUPERADMIN_PASSWORD: ADMIN_PASSWORD,
    RUST_LOG: 'info',
  };
  server = spawn(SERVER_BIN, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr?.on('data', (d) => (log += d.toString()));
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the mailbox server did not start:\n${log}`)), 60_000);
    let out = '';
    server?.stdout?.on('data', (d) => {
      out += d.toString();
      const m = out.match(/Back office listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server?.on('exit', (code) => reject(new Error(`the mailbox server exited with ${code}:\n${log}`)));
  });
});

test.afterAll(async () => {
  server?.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the mailbox shows the welcome email readably, links clickable', async ({ page }) => {
  const email = `mailbox.${Date.now()}@newcomer.test`;
  await open(page, `${url}/signup`);
  await page.getByLabel('Company name').fill(unique('Mailbox Co'));
  await page.getByLabel('Work email').fill(email);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(/\/signup\/thanks$/);

  // The log names the page that shows the email.
  await expect.poll(() => log, { timeout: 30_000 }).toMatch(/email written to .*read it at \S+\/admin\/mail\/[0-9a-f-]{36}/);
  const id = log.match(/read it at \S+\/admin\/mail\/([0-9a-f-]{36})/)?.[1];

  // Signed in on the second server (cookies ignore ports: this context's only).
  await open(page, `${url}/login`);
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${url}/admin/tenants`);
  await open(page, `${url}/admin/mail`);
  const row = page.getByTestId('mail-row').filter({ hasText: email });
  await expect(row).toBeVisible();
  await row.getByRole('link').click();
  await expect(page).toHaveURL(new RegExp(`/admin/mail/${id}$`));
  await expect(page.getByTestId('mail-subject')).toContainText('is ready');
  const body = page.getByTestId('mail-body');
  await expect(body).toContainText(`Username:   ${email}`);
  // Shown once, whole (no soft line breaks left from quoted-printable).
  expect(((await body.textContent()) ?? '').split('set-password?token=').length - 1).toBe(1);
  // The set-password link is whole (quoted-printable undone) and a real link.
  const link = body.getByRole('link', { name: /set-password\?token=[0-9a-f]{64}$/ });
  await expect(link).toHaveCount(1);
  const href = (await link.getAttribute('href')) ?? '';
  await open(page, `${url}${new URL(href).pathname}${new URL(href).search}`);
  await expect(page.getByRole('heading', { name: 'Choose your password' })).toBeVisible();
});

test('with SMTP configured the mailbox says where mail goes', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await open(page, '/admin/mail');
  await expect(page.getByTestId('mail-elsewhere')).toContainText('SMTP_URL');
});

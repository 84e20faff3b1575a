import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';

// Set by `cargo xtask test` (see xtask/src/e2e.rs).
export const ADMIN_EMAIL = process.env.ADMIN_EMAIL ?? 'admin@e2e.test';
export const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD ?? 'e2e admin password';
export const MAILBOX_DIR = process.env.MAILBOX_DIR ?? '';

/** A name no other test uses. */
export function unique(prefix: string): string {
  return `${prefix} ${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** Signs in through the login page and waits for the landing page. */
export async function signIn(page: Page, email: string, password: string, landing: RegExp) {
  await open(page, '/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(landing);
}

/** A browser context with JavaScript off, signed in as the super admin through the plain form. */
export async function noJsAdmin(browser: Browser): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/login');
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/admin\/tenants$/);
  return { context, page };
}

/** The text of an email as a reader sees it (quoted-printable undone). */
export function plainText(raw: string): string {
  const [head, ...rest] = raw.split('\r\n\r\n');
  const body = rest.join('\r\n\r\n');
  if (!/content-transfer-encoding: quoted-printable/i.test(head)) return body;
  return body
    .replace(/=\r\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

/** Waits for an email to `to` whose text matches `pattern`; returns its text. */
export async function waitForMail(to: string, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (fs.existsSync(MAILBOX_DIR)) {
      for (const f of fs.readdirSync(MAILBOX_DIR).filter((f) => f.endsWith('.eml'))) {
        const raw = fs.readFileSync(path.join(MAILBOX_DIR, f), 'utf8');
        if (raw.includes(`X-Envelope-To: ${to}`)) {
          const text = plainText(raw);
          if (pattern.test(text)) return text;
        }
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no email to ${to} matching ${pattern} within ${timeoutMs} ms`);
}

/** How many emails went to `to`. */
export function mailCount(to: string): number {
  if (!fs.existsSync(MAILBOX_DIR)) return 0;
  return fs
    .readdirSync(MAILBOX_DIR)
    .filter((f) => f.endsWith('.eml'))
    .filter((f) => fs.readFileSync(path.join(MAILBOX_DIR, f), 'utf8').includes(`X-Envelope-To: ${to}`)).length;
}

/** Opens `path` and waits until the wasm bundle has hydrated it. */
export async function open(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
}

/** Creates a tenant through the (hydrated) admin page and returns its id once it is `status`. */
export async function createTenant(page: Page, name: string, status = 'active'): Promise<string> {
  await open(page, '/admin/tenants');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel("Tenant admin's email").fill(`${Date.now()}.${Math.floor(Math.random() * 1e6)}@owner.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  const row = page.getByTestId('tenant-row').filter({ hasText: name });
  await expect(row.getByTestId('status')).toHaveText(status, { timeout: 45_000 });
  return (await row.getAttribute('data-id')) ?? '';
}

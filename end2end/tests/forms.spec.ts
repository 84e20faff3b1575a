import { test, expect, type Page } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, noJsAdmin, open, unique, waitForMail } from './helpers';

// Item 2: every form is a real POST form that works with JavaScript off and
// before hydration; no secret ever lands in a URL; `next` only leads to a path on
// this site; only same-origin posts are taken.

/** Fails the test if any request of `page` carries a secret in its URL. */
function noSecretsInUrls(page: Page, secrets: string[]) {
  page.on('request', (r) => {
    for (const s of secrets) expect(r.url(), `request ${r.url()}`).not.toContain(encodeURIComponent(s));
  });
}

test('sign-in with JavaScript off: a POST, the session cookie, no password in the address', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  noSecretsInUrls(page, [ADMIN_PASSWORD, 'wrong password 123']);
  await page.goto('/login?next=/hangfire/jobs/failed');
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill('wrong password 123');
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/login')),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  expect(resp.status()).toBe(401);
  await expect(page.getByRole('alert')).toContainText('wrong email or password');
  await expect(page.getByLabel('Email')).toHaveValue(ADMIN_EMAIL);
  await expect(page.getByLabel('Password')).toHaveValue('');
  // The first problem has focus without any script.
  await expect(page.locator('.form-error')).toBeFocused();

  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/hangfire\/jobs\/failed$/);
  const session = (await context.cookies()).find((c) => c.name === 'session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Strict');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Failed (dead letters)');
  await context.close();
});

test('sign-in before the wasm has loaded posts the form, never a GET with the password', async ({ page }) => {
  noSecretsInUrls(page, [ADMIN_PASSWORD]);
  await page.route('**/pkg/app_bg.wasm', (route) => route.abort());
  await page.goto('/login');
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/admin\/tenants$/);
  expect(page.url()).not.toContain('password');
});

// Open-redirect payloads for `next`, as raw query strings: each must land on
// this site's own start page after sign-in, with and without JavaScript.
const PAYLOADS = [
  '//evil.example/',
  '/\\evil.example/',
  '\\\\evil.example',
  'https://evil.example/',
  'http:evil.example',
  'javascript:alert(document.domain)',
  'JaVaScRiPt:alert(1)',
  '/%09/evil.example',
  '/%0a/evil.example',
  '/%0d/evil.example',
  '%2F%2Fevil.example',
  '/%5Cevil.example',
  '%09//evil.example',
  '/%00/evil.example',
  ' //evil.example',
];

for (const js of [false, true]) {
  test(`next after sign-in stays on this site (${js ? 'hydrated' : 'no JavaScript'})`, async ({ browser, baseURL }) => {
    const origin = new URL(baseURL ?? '').origin;
    for (const payload of PAYLOADS) {
      const context = await browser.newContext({ javaScriptEnabled: js });
      const page = await context.newPage();
      let dialogs = 0;
      page.on('dialog', async (d) => {
        dialogs += 1;
        await d.dismiss();
      });
      const raw = payload.replace(/ /g, '%20').replace(/\\/g, '%5C');
      if (js) await open(page, `/login?next=${raw}`);
      else await page.goto(`/login?next=${raw}`);
      await page.getByLabel('Email').fill(ADMIN_EMAIL);
      await page.getByLabel('Password').fill(ADMIN_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL((u) => u.pathname === '/admin/tenants' || u.origin !== origin, { timeout: 15_000 });
      expect(new URL(page.url()).origin, payload).toBe(origin);
      expect(new URL(page.url()).pathname, payload).toBe('/admin/tenants');
      expect(dialogs, payload).toBe(0);
      await context.close();
    }
  });
}

test('sign-up with JavaScript off: errors by field, then the thanks page', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/signup');
  await page.getByLabel('Company name').fill(' ');
  await page.getByLabel('Work email').fill('not-an-email');
  await page.getByRole('button', { name: 'Register' }).click();
  await expect(page.locator('#company_name-error')).toContainText('is required');
  await expect(page.locator('#email-error')).not.toBeEmpty();
  await expect(page.getByLabel('Company name')).toHaveAttribute('aria-invalid', 'true');
  await expect(page.getByLabel('Company name')).toHaveAttribute('aria-describedby', 'company_name-error');
  await expect(page.getByLabel('Company name')).toBeFocused();
  await expect(page.getByLabel('Work email')).toHaveValue('not-an-email');

  const email = `nojs.${Date.now()}@signup.test`;
  await page.getByLabel('Company name').fill(unique('No Script Inc'));
  await page.getByLabel('Work email').fill(email);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(/\/signup\/thanks$/);
  await expect(page.getByTestId('thanks')).toBeVisible();

  // The welcome email's link, followed with JavaScript still off.
  const token = (await waitForMail(email, /set-password\?token=/)).match(/token=([0-9a-f]+)/)?.[1] ?? '';
  noSecretsInUrls(page, ['no script password']);
  await page.goto(`/set-password?token=${token}`);
  await page.getByLabel('New password (at least 10 characters)').fill('no script password');
  await page.getByLabel('Repeat it').fill('something else entirely');
  await page.getByRole('button', { name: 'Set password' }).click();
  await expect(page.locator('#again-error')).toContainText('differ');
  await expect(page.getByLabel('Repeat it')).toBeFocused();
  expect(page.url()).not.toContain('password=');
  await page.getByLabel('New password (at least 10 characters)').fill('no script password');
  await page.getByLabel('Repeat it').fill('no script password');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.waitForURL(/\/login\?password_set=1$/);
  await expect(page.getByTestId('password-set')).toBeVisible();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('no script password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/app$/);
  await context.close();
});

test('create tenant and bulk actions with JavaScript off', async ({ browser }) => {
  const { context, page } = await noJsAdmin(browser);
  await page.getByLabel('Name').fill('');
  await page.getByLabel("Tenant admin's email").fill(`x.${Date.now()}@nojs.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await expect(page.locator('#name-error')).not.toBeEmpty();
  await expect(page.getByLabel('Name')).toBeFocused();

  const name = unique('No Script Tenant');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel("Tenant admin's email").fill(`owner.${Date.now()}@nojs.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await page.waitForURL(/\/admin\/tenants\?created=/);
  await expect(page.getByTestId('started')).toHaveText('Tenant creation started. You will be notified when complete.');
  await expect(page.getByTestId('tenant-row').filter({ hasText: name })).toBeVisible();

  // Bulk delete of one succeeded job, then find it among the deleted.
  await page.goto('/hangfire/jobs/succeeded');
  const row = page.getByTestId('job-row').first();
  const id = await row.getAttribute('data-id');
  await row.getByRole('checkbox').check();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.waitForURL(/\/hangfire\/jobs\/succeeded\?done=1&failed=0$/);
  await expect(page.getByTestId('list-message')).toHaveText('done: 1 job(s)');
  await page.goto('/hangfire/jobs/deleted');
  await expect(page.locator(`[data-testid="job-row"][data-id="${id}"]`)).toBeVisible();
  await context.close();
});

test('cross-site and origin-less form posts are refused', async ({ request, baseURL }) => {
  for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, {}]) {
    const r = await request.post('/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      data: `email=${encodeURIComponent(ADMIN_EMAIL)}&password=${encodeURIComponent(ADMIN_PASSWORD)}`,
      maxRedirects: 0,
    });
    expect(r.status(), JSON.stringify(headers)).toBe(403);
    expect(r.headers()['set-cookie'] ?? '').not.toContain('session=');
  }
  const ok = await request.post('/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(baseURL ?? '').origin },
    data: `email=${encodeURIComponent(ADMIN_EMAIL)}&password=${encodeURIComponent(ADMIN_PASSWORD)}`,
    maxRedirects: 0,
  });
  expect(ok.status()).toBe(303);
  expect(ok.headers()['set-cookie']).toMatch(/session=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict/);
});

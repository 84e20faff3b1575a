import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, open, signIn, unique, waitForMail } from './helpers';

// AC5: the job dashboard is for super admins only.
test('AC5: anonymous visitors are sent to the login page', async ({ page }) => {
  const response = await page.goto('/hangfire/jobs/failed');
  await expect(page).toHaveURL(/\/login\?next=\/hangfire\/jobs\/failed$/);
  expect(response?.status()).toBe(200);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  // Signing in goes back where they were going.
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/hangfire\/jobs\/failed$/);
});

test('AC5: a tenant admin gets 403, and the API refuses them too', async ({ page, browser }) => {
  // A tenant admin: created by the super admin, password set through the email.
  const admin = await browser.newPage();
  await signIn(admin, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const email = `ta.${Date.now()}@tenant.test`;
  await open(admin, '/admin/tenants');
  await admin.getByLabel('Name').fill(unique('Tenant Admin Co'));
  await admin.getByLabel("Tenant admin's email").fill(email);
  await admin.getByRole('button', { name: 'Create tenant' }).click();
  const token = (await waitForMail(email, /set-password\?token=/)).match(/token=([0-9a-f]+)/)?.[1];
  await admin.close();
  await open(page, `/set-password?token=${token}`);
  await page.getByLabel('New password (at least 10 characters)').fill('tenant admin password');
  await page.getByLabel('Repeat it').fill('tenant admin password');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.waitForURL(/\/login\?password_set=1$/);
  await signIn(page, email, 'tenant admin password', /\/app$/);

  for (const path of ['/hangfire', '/hangfire/jobs/failed', '/admin/tenants']) {
    const r = await page.goto(path);
    expect(r?.status(), path).toBe(403);
    await expect(page.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
  }
  // The page's own gRPC-web calls are refused server-side as well.
  const refused = await page.evaluate(async () => {
    const r = await fetch('/jobs.v1.JobService/GetCounts', {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    return r.headers.get('grpc-status') ?? (await r.text());
  });
  expect(refused).toBe('7'); // PERMISSION_DENIED
});

test('AC5: the super admin sees the dashboard and can requeue and delete', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await open(page, '/admin/tenants');
  const name = unique('Doomed Dash');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel("Tenant admin's email").fill(`dd.${Date.now()}@doomed.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  const row = page.getByTestId('tenant-row').filter({ hasText: name });
  await expect(row.getByTestId('status')).toHaveText('failed', { timeout: 45_000 });

  await open(page, '/hangfire');
  await expect(page.getByRole('heading', { name: 'Jobs', level: 1 })).toBeVisible();
  await expect(page.getByTestId('total-succeeded')).toHaveText(/^\d+$/);
  await expect(page.getByTestId('worker-row').first()).toBeVisible();
  await expect(page.getByTestId('history').getByTestId('throughput')).toBeVisible();

  // The dead-letter queue, filtered by text to our tenant's job.
  await open(page, '/hangfire/jobs/failed');
  await page.getByLabel('Type').fill('tenants.provision');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/kind=tenants.provision/);
  await page.waitForSelector('body[data-hydrated="true"]');
  const jobs = page.getByTestId('job-row');
  await expect(jobs.first()).toBeVisible();
  const first = jobs.first();
  const id = await first.getAttribute('data-id');
  await first.getByRole('checkbox').check();
  await page.getByRole('button', { name: 'Requeue' }).click();
  await expect(page.getByTestId('list-message')).toHaveText('done: 1 job(s)');

  // The job runs again and fails again (the fault is still set); then delete it
  // from its page.
  await open(page, `/hangfire/job/${id}`);
  await expect(page.getByTestId('history')).toContainText('requeued by');
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId('job-state')).toHaveText('failed', { timeout: 1000 });
  }).toPass({ timeout: 45_000 });
  await page.getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByTestId('job-state')).toHaveText('deleted');
});

test('cross-site form posts to dashboard actions are refused', async ({ page, request }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Strict');
  // What a hostile page's <form method=post> can send: a simple content type.
  const r = await request.post('/jobs.v1.JobService/DeleteJob', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `session=${session?.value}`, origin: 'https://evil.example' },
    data: 'id=1',
  });
  expect(r.headers()['grpc-status'] ?? 'none').not.toBe('0');
  expect(r.status() === 200 && r.headers()['grpc-status'] === '0').toBe(false);
});

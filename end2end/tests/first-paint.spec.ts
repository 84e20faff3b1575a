import { test, expect } from '@playwright/test';
import { noJsAdmin, createTenant, ADMIN_EMAIL, ADMIN_PASSWORD, signIn, unique, open } from './helpers';

// Item 3: pages are rendered with their data by the server (visible with
// JavaScript off), and hydration reuses that data instead of fetching it again.
test('the server renders the data: tenants, dashboard, lists and a job, JavaScript off', async ({ browser, page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const name = unique('First Paint');
  const id = await createTenant(page, name);

  const { context, page: bare } = await noJsAdmin(browser);
  await expect(bare.getByTestId('tenant-row').filter({ hasText: name })).toBeVisible();
  await bare.goto('/hangfire');
  await expect(bare.getByTestId('total-succeeded')).toHaveText(/^[1-9]\d*$/);
  await expect(bare.getByTestId('worker-row').first()).toBeVisible();
  await expect(bare.getByTestId('realtime').getByTestId('throughput')).toBeVisible();
  await bare.goto('/hangfire/jobs/succeeded');
  await expect(bare.getByTestId('job-row').first()).toBeVisible();
  await bare.goto(`/admin/tenants/${id}`);
  await expect(bare.getByRole('heading', { level: 1 })).toHaveText(name);
  await bare.getByRole('link', { name: /^#\d+$/ }).click();
  await expect(bare.getByTestId('job-state')).toHaveText('succeeded');
  // No hand-made session block: the session travels with the framework's data.
  expect(await bare.locator('#session-data').count()).toBe(0);
  await context.close();
});

test('hydration does not fetch the data again', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const calls: string[] = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (/\/(ListTenants|GetCounts|GetTenant|ListWorkers)$/.test(path)) calls.push(path);
  });
  for (const path of ['/admin/tenants', '/hangfire']) {
    await open(page, path);
    // The toast stream connects from an effect after hydration: by then any
    // refetch an effect would start has been sent.
    await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });
  }
  expect(calls).toEqual([]);
});

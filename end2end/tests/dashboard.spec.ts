import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, open, signIn, unique } from './helpers';

// Item 5: the dashboard reads like Hangfire's, and better.
test.beforeEach(async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
});

test('lists say what matters: the first line of the error, no step names, a clear filter', async ({ page }) => {
  await createTenant(page, unique('Doomed Reading'), 'failed');
  await open(page, '/hangfire/jobs/failed');
  await expect(page.getByTestId('nav-failed')).toHaveAttribute('aria-current', 'page');
  await expect(page.getByTestId('nav-succeeded')).not.toHaveAttribute('aria-current', 'page');
  const failed = page.getByTestId('job-row').filter({ hasText: 'tenants.provision' }).first();
  await expect(failed.getByTestId('job-detail')).toContainText('PROVISION_FAULT');

  // A succeeded job of our own, so the list has rows when this spec runs alone
  // (`cargo xtask e2e dashboard`); its end is recorded just after the tenant is
  // active, so the list is opened again until it shows.
  await createTenant(page, unique('Reading Co'));
  await expect(async () => {
    await open(page, '/hangfire/jobs/succeeded');
    expect(await page.getByTestId('job-detail').count()).toBeGreaterThan(0);
  }).toPass({ timeout: 15_000 });
  const details = await page.getByTestId('job-detail').allTextContents();
  expect(details.length).toBeGreaterThan(0);
  for (const d of details) expect(d).not.toMatch(/creating database|migrating|seeding|activating/);
  await expect(page.getByLabel('Type')).toHaveAttribute('placeholder', 'any type');
  await expect(page.getByText(/live updates/)).toHaveCount(0);
});

test('charts have axes, ticks and values on hover', async ({ page }) => {
  await open(page, '/hangfire');
  await expect(page.getByText(/live updates/)).toHaveCount(0);
  for (const id of ['realtime', 'history']) {
    const chart = page.getByTestId(id);
    await expect(chart.locator('line.axis')).toHaveCount(2);
    expect(await chart.locator('text.tick').count()).toBeGreaterThan(3);
    expect(await chart.getByTestId('x-tick').count()).toBeGreaterThan(1);
  }
  // The history chart has one point per hour for 7 days; hovering one reads it out.
  const history = page.getByTestId('history');
  await expect(history.getByTestId('point')).toHaveCount(168);
  await history.getByTestId('point').last().hover();
  await expect(history.getByTestId('readout')).toHaveText(/^\d\d-\d\d \d\d:00 UTC: \d+ succeeded, \d+ failed$/);
  await expect(page.getByTestId('realtime').getByTestId('point')).toHaveCount(300);
});

test('/hangfire/jobs/dead is the failed list; unknown jobs are 404', async ({ page }) => {
  const r = await page.goto('/hangfire/jobs/dead');
  expect(r?.status()).toBe(200);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Failed (dead letters)');
  await expect(page.getByTestId('nav-failed')).toHaveAttribute('aria-current', 'page');
  for (const path of ['/hangfire/job/abc', '/hangfire/job/0', '/hangfire/job/987654321', '/hangfire/jobs/nope']) {
    const resp = await page.goto(path);
    expect(resp?.status(), path).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  }
});

test('toasts cover nothing and are announced', async ({ page, context }) => {
  await open(page, '/hangfire');
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });
  await expect(page.locator('.toasts')).toHaveAttribute('aria-live', 'polite');
  const other = await context.newPage();
  const name = unique('Toast Place');
  await createTenant(other, name);
  await other.close();
  const toast = page.getByTestId('toast').filter({ hasText: name });
  await expect(toast).toBeVisible({ timeout: 30_000 });
  const overlaps = await page.evaluate(() => {
    const t = document.querySelector('[data-testid="toast"]')!.getBoundingClientRect();
    return [...document.querySelectorAll('main .card, main table, main nav')].filter((e) => {
      const r = e.getBoundingClientRect();
      return r.left < t.right && t.left < r.right && r.top < t.bottom && t.top < r.bottom;
    }).length;
  });
  expect(overlaps).toBe(0);
});

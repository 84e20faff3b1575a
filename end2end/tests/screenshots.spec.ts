import { test, expect, type Page } from '@playwright/test';
import * as path from 'node:path';
import { ADMIN_EMAIL, ADMIN_PASSWORD, open, signIn, unique } from './helpers';

// The README's screenshots: the main pages at desktop and phone widths. Written to
// SCREENSHOTS_DIR (the README's come from `SCREENSHOTS_DIR=$PWD/docs/screenshots`),
// else into test-results.
const dir = process.env.SCREENSHOTS_DIR ?? path.join('test-results', 'screenshots');

/** Dismisses every toast (earlier tests leave a backlog), so the page shows. */
async function dismissAll(page: Page) {
  const close = page.getByRole('button', { name: 'Dismiss' });
  for (let i = 0; i < 100 && (await close.count()) > 0; i++) await close.first().click();
  await expect(close).toHaveCount(0);
}

test('main pages, desktop and phone', async ({ page }) => {
  await page.setViewportSize({ width: 1200, height: 800 });
  await open(page, '/signup');
  await page.screenshot({ path: path.join(dir, 'signup.png') });

  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });
  await dismissAll(page);
  const name = unique('Screenshot Co');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel("Tenant admin's email").fill(`shot.${Date.now()}@example.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await expect(page.getByTestId('toast').filter({ hasText: name })).toBeVisible({ timeout: 30_000 });
  await page.screenshot({ path: path.join(dir, 'admin-tenants.png') });

  await open(page, '/hangfire');
  await dismissAll(page);
  await expect(page.getByTestId('worker-row').first()).toBeVisible();
  await page.getByTestId('history').getByTestId('point').last().hover();
  await page.screenshot({ path: path.join(dir, 'hangfire.png'), fullPage: true });

  await open(page, '/hangfire/jobs/succeeded');
  await expect(page.getByTestId('job-row').first()).toBeVisible();
  await page.screenshot({ path: path.join(dir, 'hangfire-succeeded.png') });

  await open(page, '/hangfire/jobs/failed');
  await page.screenshot({ path: path.join(dir, 'hangfire-failed.png') });

  await page.setViewportSize({ width: 390, height: 844 });
  await open(page, '/admin/tenants');
  await expect(page.getByTestId('tenant-row').first()).toBeVisible();
  await page.screenshot({ path: path.join(dir, 'admin-tenants-phone.png') });
  await open(page, '/hangfire');
  await page.screenshot({ path: path.join(dir, 'hangfire-phone.png'), fullPage: true });
});

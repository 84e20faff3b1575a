import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, noJsAdmin, open, signIn, unique } from './helpers';

// Bulk tenant import (tenants page) as one job batch: per-row errors before
// anything is created, then live batch progress and ONE toast for the batch.

test.beforeEach(async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1, { timeout: 20_000 });
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });
});

test('a bulk import with one bad row shows that row and creates nothing', async ({ page }) => {
  const a = unique('Bulk Good');
  const b = unique('Bulk Bad');
  const stamp = Date.now();
  await page.getByTestId('import-csv').fill(
    `name,admin email\n${a},a.${stamp}@bulk.test\n${b},not-an-email\n`,
  );
  await page.getByRole('button', { name: 'Import tenants' }).click();
  const errors = page.getByTestId('import-errors');
  await expect(errors.locator('li')).toHaveCount(1);
  await expect(errors.locator('li[data-field="rows[3].admin_email"]')).toContainText('Line 3, admin email');
  await expect(page.getByTestId('import-started')).toHaveCount(0);
  // Nothing was created, not even the good row.
  await open(page, '/admin/tenants');
  await expect(page.getByTestId('tenant-row').filter({ hasText: a })).toHaveCount(0);
  await expect(page.getByTestId('tenant-row').filter({ hasText: b })).toHaveCount(0);
});

test('a good bulk import shows its progress and one toast for the batch', async ({ page }) => {
  const names = [unique('Bulk One'), unique('Bulk Two'), unique('Doomed Bulk')];
  const stamp = Date.now();
  const csv = names.map((n, i) => `"${n}",owner${i}.${stamp}@bulk.test`).join('\n');
  await page.getByTestId('import-csv').fill(csv);
  await page.getByRole('button', { name: 'Import tenants' }).click();
  await expect(page.getByTestId('import-started')).toBeVisible();
  const progress = page.getByTestId('batch-progress');
  await expect(progress).toBeVisible();
  await expect(progress).toHaveAttribute('data-state', 'finished', { timeout: 60_000 });
  await expect(page.getByTestId('batch-counts')).toHaveText('3 of 3 ended: 2 succeeded, 1 failed, 0 deleted, 0 pending');

  const toast = page.getByTestId('toast').filter({ hasText: '3 tenants: 2 active, 1 failed' });
  await expect(toast).toBeVisible({ timeout: 15_000 });
  await expect(toast).toHaveCount(1);
  // No per-tenant toasts for the batch's members.
  await page.waitForTimeout(1500);
  for (const n of names) {
    await expect(page.getByTestId('toast').filter({ hasText: n })).toHaveCount(0);
  }
  // The batch is on the dashboard's Batches page.
  await open(page, '/hangfire/batches');
  await expect(page.getByTestId('batches')).toContainText('import of 3 tenants');
});

test('without JavaScript, a bad import answers with the row errors', async ({ browser }) => {
  const { context, page } = await noJsAdmin(browser);
  await page.locator('#csv').fill(`${unique('NoJs Bulk')},nojs.${Date.now()}@bulk.test\n,missing@bulk.test\n`);
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/admin/tenants/import')),
    page.getByRole('button', { name: 'Import tenants' }).click(),
  ]);
  expect(resp.status()).toBe(422);
  await expect(page.locator('li[data-field="rows[2].name"]')).toBeVisible();
  await context.close();
});

import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, open, signIn, unique } from './helpers';

// Item 1: route parameters are read reactively. Clicking from one tab, tenant or
// job to another (client-side navigation, same route) shows the other one.
test.beforeEach(async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
});

test('dashboard tabs: clicking another tab shows its list and marks it current', async ({ page }) => {
  await open(page, '/hangfire/jobs/succeeded');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Succeeded');
  for (const [tab, heading] of [
    ['failed', 'Failed (dead letters)'],
    ['enqueued', 'Enqueued'],
    ['awaiting', 'Awaiting'],
    ['deleted', 'Deleted'],
    ['succeeded', 'Succeeded'],
  ]) {
    await page.getByTestId(`nav-${tab}`).click();
    await expect(page).toHaveURL(new RegExp(`/hangfire/jobs/${tab}$`));
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(heading);
    await expect(page.getByTestId(`nav-${tab}`)).toHaveAttribute('aria-current', 'page');
    await expect(page.getByTestId(`jobs-${tab}`)).toBeVisible();
  }
});

test("tenant page: a toast's Open for another tenant shows that tenant", async ({ page, context }) => {
  const first = unique('Nav One');
  const firstId = await createTenant(page, first);
  await open(page, `/admin/tenants/${firstId}`);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(first);
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });

  // Another tenant, created from a second tab; its toast arrives on this page.
  const other = await context.newPage();
  const second = unique('Nav Two');
  await createTenant(other, second);
  await other.close();
  const toast = page.getByTestId('toast').filter({ hasText: second });
  await expect(toast).toBeVisible({ timeout: 30_000 });
  await toast.getByRole('link', { name: 'Open' }).click();
  await expect(page).not.toHaveURL(new RegExp(firstId));
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(second);
});

test('job page: the next and previous links show those jobs', async ({ page }) => {
  const name = unique('Nav Jobs');
  const id = await createTenant(page, name);
  await open(page, `/admin/tenants/${id}`);
  await page.getByRole('link', { name: /^#\d+$/ }).click();
  await expect(page.getByTestId('job-args')).toContainText(id);
  const jobHeading = (await page.getByRole('heading', { level: 1 }).textContent()) ?? '';
  const jobId = Number(jobHeading.replace(/\D/g, ''));
  // The welcome email's job comes right after the provisioning job.
  await page.getByRole('link', { name: `Next job #${jobId + 1}` }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(`Job #${jobId + 1}`);
  await expect(page.getByTestId('job-args')).not.toContainText(id);
  await page.getByRole('link', { name: `Previous job #${jobId}` }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(`Job #${jobId}`);
  await expect(page.getByTestId('job-args')).toContainText(id);
});

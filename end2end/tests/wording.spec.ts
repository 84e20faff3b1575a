import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, open, signIn, unique, waitForMail } from './helpers';

// Item 8: wording from the requirements.
test('the public sign-up button reads Register', async ({ page }) => {
  await open(page, '/signup');
  await expect(page.getByRole('button', { name: 'Register' })).toBeVisible();
});

test("a tenant's page names the super admin who created it", async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const id = await createTenant(page, unique('Made By'));
  await open(page, `/admin/tenants/${id}`);
  await expect(page.getByTestId('created-by')).toHaveText(ADMIN_EMAIL);
});

test('the tenant home shows the workspace, its admin and next steps, not internals', async ({ page, browser }) => {
  const admin = await browser.newPage();
  await signIn(admin, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const name = unique('Home Words');
  const email = `home.${Date.now()}@words.test`;
  await open(admin, '/admin/tenants');
  await admin.getByLabel('Name').fill(name);
  await admin.getByLabel("Tenant admin's email").fill(email);
  await admin.getByRole('button', { name: 'Create tenant' }).click();
  const token = (await waitForMail(email, /set-password\?token=/)).match(/token=([0-9a-f]+)/)?.[1];
  await admin.close();
  await open(page, `/set-password?token=${token}`);
  await page.getByLabel('New password (at least 10 characters)').fill('home words password');
  await page.getByLabel('Repeat it').fill('home words password');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.waitForURL(/\/login\?password_set=1$/);
  await signIn(page, email, 'home words password', /\/app$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(name);
  await expect(page.getByTestId('tenant-admin')).toContainText(email);
  await expect(page.getByTestId('next-steps')).toContainText('What to do next');
  await expect(page.locator('main')).not.toContainText('Database');
  await expect(page.locator('main')).not.toContainText(/\bt_[0-9a-f]{8}/);
});

import { test, expect } from '@playwright/test';
import { open, signIn, unique, waitForMail, mailCount } from './helpers';

// Scenario B: a prospective client signs up, receives the welcome email through
// the real SMTP server, sets a password through its link, and signs in to a
// workspace whose data comes from the tenant's own database.
test('scenario B: sign-up, welcome email, set password, first sign-in', async ({ page }) => {
  const company = unique('Initech');
  const email = `peter.${Date.now()}@initech.test`;
  await open(page, '/signup');
  await page.getByLabel('Company name').fill(company);
  await page.getByLabel('Work email').fill(email);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(/\/signup\/thanks$/);
  await expect(page.getByTestId('thanks')).toHaveText(
    'Thanks for signing up! Check your email shortly for your login details.',
  );

  const mail = await waitForMail(email, /set-password\?token=/);
  expect(mail).toContain(`Username:   ${email}`);
  expect(mail).toContain('/login');
  const token = mail.match(/set-password\?token=([0-9a-f]+)/)?.[1];
  expect(token).toHaveLength(64);
  expect(mailCount(email)).toBe(1);

  await open(page, `/set-password?token=${token}`);
  await page.getByLabel('New password (at least 10 characters)').fill('short');
  await page.getByLabel('Repeat it').fill('short');
  await page.getByRole('button', { name: 'Set password' }).click();
  await expect(page.locator('#password-error')).toContainText('at least 10 characters');
  await page.getByLabel('New password (at least 10 characters)').fill('milton has a stapler');
  await page.getByLabel('Repeat it').fill('milton has a stapler');
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.waitForURL(/\/login\?password_set=1$/);
  await expect(page.getByTestId('password-set')).toBeVisible();

  await signIn(page, email, 'milton has a stapler', /\/app$/);
  await expect(page.getByRole('heading', { level: 1, name: company })).toBeVisible();
  await expect(page.getByTestId('tenant-roles')).toContainText('admin');
  await expect(page.getByTestId('tenant-roles')).toContainText('viewer');
  await expect(page.getByTestId('tenant-settings')).toContainText('timezone');
});

test('sign-up shows field errors from the server and stays on the page', async ({ page }) => {
  await open(page, '/signup');
  await page.getByLabel('Company name').fill(' ');
  await page.getByLabel('Work email').fill('not-an-email');
  await page.getByRole('button', { name: 'Register' }).click();
  await expect(page.locator('#company_name-error')).toContainText('is required');
  await expect(page.locator('#email-error')).not.toBeEmpty();
  await expect(page).toHaveURL(/\/signup$/);
});

import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, open, signIn, unique, waitForMail } from './helpers';

// Issue 12 item 4 / issue 11: a used or expired set-password link says so and
// offers a new one; the answer is the same for every address.
test('a used link offers a new one, which works', async ({ page, browser }) => {
  const admin = await browser.newPage();
  await signIn(admin, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const email = `nl.${Date.now()}@newlink.test`;
  await open(admin, '/admin/tenants');
  await admin.getByLabel('Name').fill(unique('New Link Co'));
  await admin.getByLabel("Tenant admin's email").fill(email);
  await admin.getByRole('button', { name: 'Create tenant' }).click();
  const token = (await waitForMail(email, /set-password\?token=/)).match(/token=([0-9a-f]+)/)?.[1];
  await admin.close();

  const setPassword = async (t: string | undefined, password: string) => {
    await open(page, `/set-password?token=${t}`);
    await page.getByLabel('New password (at least 10 characters)').fill(password);
    await page.getByLabel('Repeat it').fill(password);
    await page.getByRole('button', { name: 'Set password' }).click();
  };
  await setPassword(token, 'the first password');
  await page.waitForURL(/\/login\?password_set=1$/);

  // The same link again: a clear message and the way out.
  await setPassword(token, 'a second password');
  await expect(page.getByTestId('link-expired')).toContainText('This link has expired or was already used');
  await page.getByTestId('link-expired').getByRole('link', { name: 'Send me a new link' }).click();
  await page.waitForURL(/\/set-password\/new-link$/);
  await page.waitForSelector('body[data-hydrated="true"]');

  // An address with no account gets the very same answer.
  await page.getByLabel('Email').fill(`nobody.${Date.now()}@newlink.test`);
  await page.getByRole('button', { name: 'Send me a new link' }).click();
  const answer = await page.getByTestId('link-sent').textContent();
  expect(answer).toContain('If this address belongs to an account');

  await page.getByLabel('Email').fill(email);
  await page.getByRole('button', { name: 'Send me a new link' }).click();
  await expect(page.getByTestId('link-sent')).toHaveText(answer ?? '');

  const fresh = (await waitForMail(email, /asked for a new link/)).match(/token=([0-9a-f]+)/)?.[1];
  expect(fresh).not.toBe(token);
  await setPassword(fresh, 'a second password');
  await page.waitForURL(/\/login\?password_set=1$/);
  await signIn(page, email, 'a second password', /\/app$/);
});

test('bad input on the new-link form names the field', async ({ page }) => {
  await open(page, '/set-password/new-link');
  await page.getByLabel('Email').fill('not an address');
  await page.getByRole('button', { name: 'Send me a new link' }).click();
  await expect(page.getByLabel('Email')).toHaveAttribute('aria-invalid', 'true');
  await expect(page.getByText('is not an email address')).toBeVisible();
});

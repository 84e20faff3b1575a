import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, open, signIn, unique } from './helpers';

// Item 6: accessibility beyond the automatic checks, with the automatic checks
// (axe-core) kept under test on every page at desktop and phone width.

async function axe(page: Page, path: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const found = results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  expect(found, path).toEqual([]);
}

test('axe finds no violation on any page, desktop and 390 px; each page has its own title', async ({ page }) => {
  test.setTimeout(120_000);
  const anonymous: [string, string][] = [
    ['/', 'Back office'],
    ['/login', 'Sign in · Back office'],
    ['/signup', 'Register · Back office'],
    ['/signup/thanks', 'Thank you · Back office'],
    ['/set-password?token=x', 'Choose your password · Back office'],
    ['/no/such/page', 'Not found · Back office'],
  ];
  for (const width of [1200, 390]) {
    await page.setViewportSize({ width, height: 900 });
    for (const [path, title] of anonymous) {
      await open(page, path);
      await expect(page).toHaveTitle(title);
      await axe(page, `${path} @${width}`);
    }
  }
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const name = unique('Axe Co');
  const id = await createTenant(page, name);
  await open(page, `/admin/tenants/${id}`);
  const job = ((await page.getByRole('link', { name: /^#\d+$/ }).textContent()) ?? '').slice(1);
  const admin: [string, string][] = [
    ['/admin/tenants', 'Tenants · Back office'],
    [`/admin/tenants/${id}`, `${name} · Back office`],
    ['/admin/mail', 'Mailbox · Back office'],
    ['/hangfire', 'Jobs · Back office'],
    ['/hangfire/jobs/succeeded', 'Succeeded · Back office'],
    ['/hangfire/jobs/failed', 'Failed (dead letters) · Back office'],
    [`/hangfire/job/${job}`, `Job #${job} · Back office`],
  ];
  for (const width of [1200, 390]) {
    await page.setViewportSize({ width, height: 900 });
    for (const [path, title] of admin) {
      await open(page, path);
      await expect(page).toHaveTitle(title);
      await axe(page, `${path} @${width}`);
    }
  }
});

test('errors take focus and are tied to their inputs; success keeps focus on the page', async ({ page }) => {
  await open(page, '/signup');
  await page.getByLabel('Company name').fill(' ');
  await page.getByLabel('Work email').fill('nope');
  await page.getByRole('button', { name: 'Register' }).click();
  const company = page.getByLabel('Company name');
  await expect(company).toHaveAttribute('aria-invalid', 'true');
  await expect(company).toHaveAttribute('aria-describedby', 'company_name-error');
  await expect(page.getByLabel('Work email')).toHaveAttribute('aria-invalid', 'true');
  await expect(company).toBeFocused();

  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await page.getByLabel('Name').fill(unique('Focus Co'));
  await page.getByLabel("Tenant admin's email").fill(`focus.${Date.now()}@a11y.test`);
  await page.getByRole('button', { name: 'Create tenant' }).click();
  await expect(page.getByTestId('started')).toBeFocused();
  expect(await page.evaluate(() => document.activeElement === document.body)).toBe(false);
});

test('a skip link leads to the main content', async ({ page }) => {
  await open(page, '/login');
  await page.keyboard.press('Tab');
  const skip = page.getByRole('link', { name: 'Skip to main content' });
  await expect(skip).toBeFocused();
  await expect(skip).toBeInViewport();
  await page.keyboard.press('Enter');
  await expect(page.locator('main')).toBeFocused();
});

/** WCAG relative luminance contrast of two `rgb(...)` colours. */
function contrast(a: string, b: string): number {
  const lum = (c: string) => {
    const [r, g, bl] = (c.match(/\d+(\.\d+)?/g) ?? ['0', '0', '0']).slice(0, 3).map(Number).map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

test("the toast's Open and Dismiss show a focus ring of at least 3:1", async ({ page, context }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await expect(page.locator('.toasts[data-live="true"]')).toHaveCount(1, { timeout: 10_000 });
  const other = await context.newPage();
  const name = unique('Ring Co');
  await createTenant(other, name);
  await other.close();
  const toast = page.getByTestId('toast').filter({ hasText: name });
  await expect(toast).toBeVisible({ timeout: 30_000 });
  for (const control of [toast.getByRole('link', { name: 'Open' }), toast.getByRole('button', { name: 'Dismiss' })]) {
    await control.focus();
    // Keyboard focus (focus-visible), as a keyboard user gets it.
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    await expect(control).toBeFocused();
    const { ring, background } = await control.evaluate((el) => {
      const toastEl = el.closest('[data-testid="toast"]') as HTMLElement;
      return { ring: getComputedStyle(el).outlineColor, background: getComputedStyle(toastEl).backgroundColor };
    });
    expect(contrast(ring, background), `${ring} on ${background}`).toBeGreaterThanOrEqual(3);
  }
});

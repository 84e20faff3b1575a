import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, open, signIn, unique } from './helpers';

// Item 4: at phone width (390 px) no page scrolls sideways; tables become cards.
test('no page scrolls sideways at 390 px', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  const id = await createTenant(page, unique('Phone Width Company With A Long Name'));
  await page.setViewportSize({ width: 390, height: 844 });
  await open(page, `/admin/tenants/${id}`);
  const job = (await page.getByRole('link', { name: /^#\d+$/ }).textContent())?.slice(1);
  const pages = [
    '/', '/login', '/signup', '/signup/thanks', '/set-password?token=x', '/no/such/page',
    '/admin/tenants', `/admin/tenants/${id}`, '/admin/mail',
    '/hangfire', '/hangfire/jobs/enqueued', '/hangfire/jobs/processing', '/hangfire/jobs/scheduled',
    '/hangfire/jobs/awaiting', '/hangfire/jobs/succeeded', '/hangfire/jobs/failed', '/hangfire/jobs/deleted', `/hangfire/job/${job}`,
  ];
  for (const path of pages) {
    await open(page, path);
    const { scroll, inner } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      inner: window.innerWidth,
    }));
    expect(scroll, `${path}: ${scroll} > ${inner}`).toBeLessThanOrEqual(inner);
  }
});

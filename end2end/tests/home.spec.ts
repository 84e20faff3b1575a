import { test, expect } from '@playwright/test';

// The build chain end to end: the server renders the page, the browser hydrates it
// from the wasm bundle.
test('home page renders on the server and hydrates', async ({ page }) => {
  const pageErrors: Error[] = [];
  page.on('pageerror', (e) => pageErrors.push(e));
  await page.goto('/');
  await expect(page).toHaveTitle('Back office');
  await expect(page.getByRole('heading', { level: 1, name: 'Back office' })).toBeVisible();
  await expect(page.getByTestId('hydrated')).toHaveText('interactive', { timeout: 20_000 });
  await expect(page.getByRole('link', { name: 'Register' }).first()).toBeVisible();
  expect(pageErrors).toEqual([]);
});

// The page's Content-Security-Policy names a nonce made for that answer: the
// inline scripts Leptos wrote into it run (the page hydrates, no violation is
// reported), and a script injected into the page does not.
test('the page runs its own inline scripts and no injected one', async ({ page }) => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) violations.push(m.text());
  });
  await page.goto('/');
  await expect(page.getByTestId('hydrated')).toHaveText('interactive', { timeout: 20_000 });
  expect(violations).toEqual([]);
  const injected = await page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        document.addEventListener('securitypolicyviolation', () => resolve('blocked'), { once: true });
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true';
        document.body.appendChild(s);
        setTimeout(() => resolve((window as unknown as { __injected?: boolean }).__injected ? 'ran' : 'not run'), 2000);
      }),
  );
  expect(injected).toBe('blocked');
});

test('unknown paths answer 404 with a page', async ({ page }) => {
  const response = await page.goto('/no/such/page');
  expect(response?.status()).toBe(404);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
});

test('static assets are served', async ({ request }) => {
  for (const [path, type] of [
    ['/pkg/app.js', 'javascript'],
    ['/pkg/app_bg.wasm', 'application/wasm'],
    ['/pkg/app.css', 'text/css'],
    ['/favicon.svg', 'image/svg+xml'],
  ]) {
    const r = await request.get(path);
    expect(r.status(), path).toBe(200);
    expect(r.headers()['content-type'], path).toContain(type);
  }
});

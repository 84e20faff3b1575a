import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, signIn, unique } from './helpers';

// Figures for the notes: first contentful paint, first paint *with data* (the
// page's rows or counts on screen), and time to interactive (hydrated) of the
// main pages, and what the browser downloads. Bounds are loose (a debug build in
// CI); the figures are printed.
const DATA: Record<string, string> = {
  '/admin/tenants': '[data-testid="tenant-row"]',
  '/hangfire': '[data-testid="worker-row"]',
};

test('page timings and download sizes', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await createTenant(page, unique('Perf Co'));
  await page.addInitScript((selectors: string[]) => {
    const w = window as unknown as { __dataAt?: number };
    const check = () => {
      if (w.__dataAt === undefined && selectors.some((s) => document.querySelector(s))) {
        w.__dataAt = -1;
        // Painted in the next frame.
        requestAnimationFrame(() => (w.__dataAt = performance.now()));
      }
    };
    new MutationObserver(check).observe(document, { subtree: true, childList: true });
  }, Object.values(DATA));
  for (const [path, selector] of Object.entries(DATA)) {
    const runs: { paint: number; data: number; interactive: number }[] = [];
    for (let i = 0; i < 5; i++) {
      await page.goto(path);
      await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
      await page.waitForSelector(selector, { timeout: 20_000 });
      await page.waitForFunction(() => ((window as unknown as { __dataAt?: number }).__dataAt ?? -1) > 0);
      runs.push(
        await page.evaluate(() => {
          const paint = performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1;
          const data = (window as unknown as { __dataAt: number }).__dataAt;
          return { paint, data: Math.max(paint, data), interactive: Number(document.body.dataset.hydratedMs ?? -1) };
        }),
      );
    }
    const median = (k: 'paint' | 'data' | 'interactive') => runs.map((r) => r[k]).sort((a, b) => a - b)[2];
    const sizes = await page.evaluate(() => {
      const resources = performance.getEntriesByType('resource') as PerformanceResourceTiming[];
      const size = (suffix: string) => {
        const r = resources.find((r) => r.name.endsWith(suffix));
        return r ? { transfer: r.transferSize, decoded: r.decodedBodySize } : null;
      };
      return { wasm: size('/pkg/app_bg.wasm'), js: size('/pkg/app.js') };
    });
    console.log(
      `figure: ${path} (median of 5) first contentful paint ${median('paint').toFixed(0)} ms, ` +
        `with data ${median('data').toFixed(0)} ms, interactive ${median('interactive')} ms, ` +
        `wasm ${JSON.stringify(sizes.wasm)}, js ${JSON.stringify(sizes.js)}`,
    );
    expect(median('paint')).toBeGreaterThan(0);
    expect(median('interactive')).toBeGreaterThan(0);
    expect(median('interactive')).toBeLessThan(15_000);
  }
});

test('pages and the bundle are sent gzipped', async ({ request }) => {
  for (const path of ['/', '/pkg/app_bg.wasm', '/pkg/app.js']) {
    const r = await request.get(path, { headers: { 'accept-encoding': 'gzip' } });
    expect(r.headers()['content-encoding'], path).toBe('gzip');
  }
});

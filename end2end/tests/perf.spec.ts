import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, signIn } from './helpers';

// Figures for the notes: first contentful paint and time to interactive
// (hydrated) of the main pages, and what the browser downloads. Bounds are loose
// (a debug build in CI); the figures are printed.
test('page timings and download sizes', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  for (const path of ['/admin/tenants', '/hangfire']) {
    await page.goto(path);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    const t = await page.evaluate(() => {
      const paint = performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1;
      const interactive = Number(document.body.dataset.hydratedMs ?? -1);
      const resources = performance.getEntriesByType('resource') as PerformanceResourceTiming[];
      const size = (suffix: string) => {
        const r = resources.find((r) => r.name.endsWith(suffix));
        return r ? { transfer: r.transferSize, decoded: r.decodedBodySize } : null;
      };
      return { paint, interactive, wasm: size('/pkg/app_bg.wasm'), js: size('/pkg/app.js') };
    });
    console.log(`figure: ${path} first paint ${t.paint.toFixed(0)} ms, interactive ${t.interactive} ms, ` +
      `wasm ${JSON.stringify(t.wasm)}, js ${JSON.stringify(t.js)}`);
    expect(t.paint).toBeGreaterThan(0);
    expect(t.interactive).toBeGreaterThan(0);
    expect(t.interactive).toBeLessThan(15_000);
  }
});

test('pages and the bundle are sent gzipped', async ({ request }) => {
  for (const path of ['/', '/pkg/app_bg.wasm', '/pkg/app.js']) {
    const r = await request.get(path, { headers: { 'accept-encoding': 'gzip' } });
    expect(r.headers()['content-encoding'], path).toBe('gzip');
  }
});

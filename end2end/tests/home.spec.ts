import { test, expect } from '@playwright/test';

// The build chain end to end: the server renders the page, the browser hydrates it
// from the wasm bundle, and the hydrated page follows the job counts over a
// gRPC-web server stream (JobService.WatchCounts) on the same port.
test('home page hydrates and follows the job counts over gRPC-web', async ({ page }) => {
  const pageErrors: Error[] = [];
  page.on('pageerror', (e) => pageErrors.push(e));
  const watch = page.waitForRequest((r) => r.url().endsWith('/jobs.v1.JobService/WatchCounts'));

  await page.goto('/');
  await expect(page).toHaveTitle('Back office');
  await expect(page.getByRole('heading', { level: 1, name: 'Back office' })).toBeVisible();

  // Server-rendered first, then made interactive by the wasm bundle.
  await expect(page.getByTestId('hydrated')).toHaveText('interactive', { timeout: 20_000 });

  const request = await watch;
  expect(request.headers()['content-type']).toContain('application/grpc-web');

  // The stream sends the counts at once and again on change or as a keep-alive
  // (every 15 s on an idle engine), so two messages may take ~15 s.
  const updates = page.getByTestId('updates');
  await expect
    .poll(async () => Number((await updates.textContent())?.match(/updates received: (\d+)/)?.[1] ?? 0), {
      timeout: 40_000,
      message: 'at least two WatchCounts messages should arrive',
    })
    .toBeGreaterThanOrEqual(2);

  for (const state of ['enqueued', 'processing', 'scheduled', 'succeeded', 'dead', 'deleted']) {
    await expect(page.getByTestId(`count-${state}`)).toHaveText(/^\d+$/);
  }
  await expect(page.getByRole('alert')).toHaveCount(0);
  expect(pageErrors).toEqual([]);
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

test('counts change live when jobs change state', async ({ page, request }) => {
  await page.goto('/');
  await expect(page.getByTestId('hydrated')).toHaveText('interactive', { timeout: 20_000 });
  await expect(page.getByTestId('count-enqueued')).toHaveText(/^\d+$/, { timeout: 20_000 });
  const before = Number(await page.getByTestId('updates').textContent().then((t) => t?.match(/\d+/)?.[0]));
  // Enqueue three diagnostic jobs with a gRPC-web call made by hand (from outside
  // the page), then watch the succeeded count grow without a reload.
  const before_ok = Number(await page.getByTestId('count-succeeded').textContent());
  const res = await request.post('/jobs.v1.JobService/EnqueueDiagnostic', {
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
    data: grpcWebFrame(encodeEnqueueDiagnostic('diag.noop', 3)),
  });
  expect(res.status()).toBe(200);
  expect(res.headers()['content-type']).toContain('application/grpc-web');
  await expect
    .poll(async () => Number(await page.getByTestId('count-succeeded').textContent()), { timeout: 20_000 })
    .toBeGreaterThanOrEqual(before_ok + 3);
  const after = Number(await page.getByTestId('updates').textContent().then((t) => t?.match(/\d+/)?.[0]));
  expect(after).toBeGreaterThan(before);
});

/** Protobuf for `EnqueueDiagnosticRequest { kind = 1; count = 2; }`. */
function encodeEnqueueDiagnostic(kind: string, count: number): Buffer {
  const k = Buffer.from(kind, 'utf8');
  return Buffer.concat([Buffer.from([0x0a, k.length]), k, Buffer.from([0x10, count])]);
}

/** A gRPC-web data frame: flag 0, big-endian length, message. */
function grpcWebFrame(msg: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

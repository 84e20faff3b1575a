import { test, expect } from '@playwright/test';

// The riskiest link of the stack, end to end: server-side rendering, hydration,
// and a server-streaming RPC over gRPC-web (JobService.WatchCounts) in a real browser.
test('home page renders, hydrates, and streams live job counts over gRPC-web', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));

  const grpcWeb: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/jobs.v1.JobService/WatchCounts')) grpcWeb.push(r.headers()['content-type'] ?? '');
  });

  const response = await page.goto('/');
  expect(response?.status()).toBe(200);
  await expect(page.getByRole('heading', { name: 'Back office' })).toBeVisible();

  // Hydration replaces the server-rendered marker.
  await expect(page.getByTestId('hydrated')).toHaveText('interactive', { timeout: 20_000 });

  // The stream delivers more than one message (the server re-sends at least every
  // 15 s; the test waits for the first few counts changes or keep-alives).
  await expect(page.getByTestId('count-succeeded')).toHaveText(/^\d+$/, { timeout: 20_000 });
  await expect(page.getByTestId('updates')).toHaveText(/updates received: [1-9]/);
  expect(grpcWeb.length).toBeGreaterThan(0);
  expect(grpcWeb[0]).toContain('application/grpc-web');
  expect(errors).toEqual([]);
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

import { defineConfig } from '@playwright/test';

// Run through `cargo xtask test`, which builds the site, starts the server on a free
// port with a fresh database and passes its URL as BASE_URL. Browsers cannot be
// downloaded on our machines, so this launches the system's Chromium
// (`apt-get install chromium`; CHROMIUM_PATH overrides the path).
export default defineConfig({
  testDir: './tests',
  // One server, one database: tests share them, so run them one at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  reporter: 'list',
  use: {
    baseURL: process.env.BASE_URL ?? 'http://127.0.0.1:3000',
    trace: 'retain-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
          args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
});

import { defineConfig } from '@playwright/test';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';

// The server binary and site come from `cargo xtask test` (SERVER_BIN, SITE_ROOT).
const server = process.env.SERVER_BIN ?? path.resolve(__dirname, '../target/debug/server');
const siteRoot = process.env.SITE_ROOT ?? path.resolve(__dirname, '../target/site');
const port = Number(process.env.E2E_PORT ?? 3917);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'backoffice-e2e-'));

export default defineConfig({
  testDir: './tests',
  workers: 1,
  timeout: 60_000,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'off',
    launchOptions: {
      // Browsers cannot be downloaded here: use Debian's Chromium.
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    },
  },
  webServer: {
    command: server,
    url: `http://127.0.0.1:${port}/metrics`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'ignore',
    stderr: 'pipe',
    env: {
      BIND_ADDR: `127.0.0.1:${port}`,
      SITE_ROOT: siteRoot,
      DATABASE_URL: `sqlite://${dataDir}/app.db`,
      RUST_LOG: 'warn',
    },
  },
});

import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createTenant, noJsAdmin, open, signIn, unique } from './helpers';

// Issue 12: the dashboard's Recurring page (pause, resume, trigger now) and when
// scheduled jobs are due.
test('the Recurring page pauses, resumes and triggers a schedule', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  await open(page, '/hangfire');
  await page.getByTestId('nav-recurring').click();
  await page.waitForURL(/\/hangfire\/recurring$/);
  await expect(page.getByRole('heading', { name: 'Recurring jobs', level: 1 })).toBeVisible();

  const row = page.locator('[data-testid="recurring-row"][data-name="identity.prune"]');
  await expect(row).toBeVisible();
  await expect(row.getByRole('cell', { name: '*/10 * * * *' })).toBeVisible();
  await expect(row.getByTestId('paused')).toHaveText('no');
  // Its next run, when hydrated, says how far off it is.
  await expect(row.getByTestId('next-run')).toHaveText(/^in \d+ (s|min)|^now/);

  await row.getByRole('button', { name: 'Pause' }).click();
  await expect(page.getByTestId('recurring-message')).toHaveText('identity.prune is paused');
  await expect(row.getByTestId('paused')).toHaveText('yes');
  await expect(row.getByTestId('next-run')).toHaveText('paused');

  await row.getByRole('button', { name: 'Resume' }).click();
  await expect(page.getByTestId('recurring-message')).toHaveText('identity.prune is resumed');
  await expect(row.getByTestId('paused')).toHaveText('no');

  await row.getByRole('button', { name: 'Trigger now' }).click();
  await expect(page.getByTestId('recurring-message')).toHaveText(/identity\.prune triggered: job #\d+/);
  const id = (await page.getByTestId('recurring-message').textContent())?.match(/#(\d+)/)?.[1];
  // The job appears: as the schedule's last job, and on its own page.
  await expect(row.getByTestId('last-job')).toContainText(`#${id}`);
  await page.getByTestId('triggered-job').click();
  await page.waitForURL(new RegExp(`/hangfire/job/${id}$`));
  await expect(page.getByRole('heading', { name: `Job #${id}` })).toBeVisible();
  await expect(page.getByText('identity.prune').first()).toBeVisible();
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId('job-state')).toHaveText('succeeded', { timeout: 1000 });
  }).toPass({ timeout: 20_000 });
});

test('the Recurring page works before JavaScript', async ({ browser }) => {
  const { context, page } = await noJsAdmin(browser);
  await page.goto('/hangfire/recurring');
  const row = page.locator('[data-testid="recurring-row"][data-name="identity.prune"]');
  await row.getByRole('button', { name: 'Pause' }).click();
  await page.waitForURL(/\/hangfire\/recurring\?done=pause/);
  await expect(page.getByTestId('recurring-message')).toHaveText('identity.prune is paused');
  await expect(row.getByTestId('paused')).toHaveText('yes');
  await row.getByRole('button', { name: 'Resume' }).click();
  await page.waitForURL(/\/hangfire\/recurring\?done=resume/);
  await expect(row.getByTestId('paused')).toHaveText('no');
  await row.getByRole('button', { name: 'Trigger now' }).click();
  await page.waitForURL(/\/hangfire\/recurring\?done=trigger/);
  await expect(page.getByTestId('recurring-message')).toHaveText(/identity\.prune triggered: job #\d+/);
  await context.close();
});

test('the Scheduled list says when each job is due', async ({ page }) => {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD, /\/admin\/tenants$/);
  // An active tenant schedules its admin's welcome reminder 48 hours out.
  await createTenant(page, unique('Due Co'));
  await open(page, '/hangfire/jobs/scheduled?kind=mail.welcome_reminder');
  const due = page.getByTestId('job-row').first().getByTestId('job-detail');
  await expect(due).toHaveText(/^in (1 day 23 h|2 days) · at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
});

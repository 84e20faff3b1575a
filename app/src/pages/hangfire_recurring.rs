//! `/hangfire/recurring`: the recurring (cron) jobs, super admins only.
//!
//! One row per schedule: name, cron expression, time zone, queue, next run
//! (when it is due, relative once hydrated), last run, the last job it enqueued
//! (a link to its page) with that job's state, and whether it is paused; with
//! pause / resume and "trigger now". The buttons are a plain POST form
//! (`server/src/forms.rs`), so they work before hydration; hydrated, they call
//! `jobs.v1` directly and reload the list.

use leptos::prelude::*;
use leptos_meta::Title;
use proto::jobs::v1 as pb;
use proto::jobs::v1::job_service_client::JobServiceClient;

use super::hangfire::{Counts, DashNav, state_label, time};
use super::when::{Due, now};
use super::{SuperAdminOnly, query_param};

/// Runs `action` (`pause`, `resume` or `trigger`) on the schedule `name`; what
/// to say when it worked (for `trigger`, the new job's id), or the error.
pub async fn act(action: &str, name: String) -> Result<(String, i64), String> {
    let mut c = JobServiceClient::new(crate::grpc::channel());
    let req = pb::RecurringNameRequest { name: name.clone() };
    let r = match action {
        "pause" => c.pause_recurring(req).await.map(|_| (format!("{name} is paused"), 0)),
        "resume" => c.resume_recurring(req).await.map(|_| (format!("{name} is resumed"), 0)),
        "trigger" => c.trigger_recurring(req).await.map(|r| {
            let id = r.into_inner().job_id;
            (format!("{name} triggered: job #{id}"), id)
        }),
        other => Err(tonic::Status::invalid_argument(format!("action: {other:?} is not pause, resume or trigger"))),
    };
    r.map_err(|s| crate::grpc::message(&s))
}

/// What the page says after the no-JavaScript form's redirect
/// (`?done=<action>&name=<name>&job=<id>`).
pub fn done_message(action: &str, name: &str, job: &str) -> Option<String> {
    match action {
        "pause" => Some(format!("{name} is paused")),
        "resume" => Some(format!("{name} is resumed")),
        "trigger" => Some(format!("{name} triggered: job #{job}")),
        _ => None,
    }
}

/// The page.
#[component]
pub fn RecurringPage() -> impl IntoView {
    view! { <Title text="Recurring jobs"/><SuperAdminOnly><Recurring/></SuperAdminOnly> }
}

#[component]
fn Recurring() -> impl IntoView {
    let counts = Counts::new();
    let now = now();
    let (refresh, set_refresh) = signal(0u64);
    let list = crate::grpc::resource(
        move || refresh.get(),
        |ch, _| async move { JobServiceClient::new(ch).list_recurring(pb::ListRecurringRequest {}).await },
    );
    let (done, done_name, done_job) = (query_param("done"), query_param("name"), query_param("job"));
    let message = RwSignal::new(None::<(String, i64)>);
    let shown = move || {
        message.get().or_else(|| {
            let job = done_job.get();
            done_message(&done.get(), &done_name.get(), &job).map(|m| (m, job.parse().unwrap_or(0)))
        })
    };
    // Which button of which row was pressed (the submit event does not say).
    let pending = RwSignal::new(("", String::new()));
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(_form) = super::submitted_form(&ev) else { return };
        let (action, name) = pending.get_untracked();
        crate::grpc::spawn(async move {
            message.set(Some(match act(action, name).await {
                Ok(m) => m,
                Err(e) => (e, 0),
            }));
            set_refresh.update(|n| *n += 1);
            super::focus_id("recurring-message");
        });
    };
    view! {
        <DashNav counts/>
        <section class="card">
            <h1>"Recurring jobs"</h1>
            <p class="muted">"Each schedule enqueues one job per fire time, however many workers run. Times are UTC."</p>
            <p class="muted" role="status" id="recurring-message" tabindex="-1" data-testid="recurring-message">
                {move || shown().map(|(m, job)| view! {
                    {m}
                    {(job > 0).then(|| view! { " " <a href=format!("/hangfire/job/{job}") data-testid="triggered-job">"open it"</a> })}
                })}
            </p>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(r) if r.recurring.is_empty() => view! { <p class="muted">"No recurring jobs are declared."</p> }.into_any(),
                        Ok(r) => view! {
                            <table class="grid cards" aria-label="Recurring jobs" data-testid="recurring">
                                <thead><tr>
                                    <th>"Name"</th><th>"Cron"</th><th>"Time zone"</th><th>"Queue"</th>
                                    <th>"Next run"</th><th>"Last run (UTC)"</th><th>"Last job"</th><th>"Paused"</th><th>"Actions"</th>
                                </tr></thead>
                                <tbody>
                                    {r.recurring.into_iter().map(|j| {
                                        let name = j.name.clone();
                                        let press = move |action: &'static str| {
                                            let name = name.clone();
                                            move |_| pending.set((action, name.clone()))
                                        };
                                        view! {
                                            <tr data-testid="recurring-row" data-name=j.name.clone() data-paused=j.paused.to_string()>
                                                <td data-label="Name"><code>{j.name.clone()}</code><br/><span class="muted">{j.kind.clone()}</span></td>
                                                <td data-label="Cron"><code>{j.cron.clone()}</code></td>
                                                <td data-label="Time zone">{j.time_zone.clone()}</td>
                                                <td data-label="Queue">{j.queue.clone()}</td>
                                                <td data-label="Next run" data-testid="next-run">
                                                    {if j.paused { view! { <span class="muted">"paused"</span> }.into_any() } else { view! { <Due ms=j.next_run_at_unix_ms now/> }.into_any() }}
                                                </td>
                                                <td data-label="Last run">{time(j.last_run_at_unix_ms)}</td>
                                                <td data-label="Last job" data-testid="last-job">
                                                    {if j.last_job_id > 0 {
                                                        view! {
                                                            <a href=format!("/hangfire/job/{}", j.last_job_id)>{format!("#{}", j.last_job_id)}</a>
                                                            " " <span class="pill">{state_label(j.last_job_state)}</span>
                                                        }.into_any()
                                                    } else {
                                                        view! { <span class="muted">"never ran"</span> }.into_any()
                                                    }}
                                                </td>
                                                <td data-label="Paused" data-testid="paused">{if j.paused { "yes" } else { "no" }}</td>
                                                <td data-label="Actions">
                                                    <form method="post" action="/hangfire/recurring" data-form="recurring" on:submit=on_submit>
                                                        <input type="hidden" name="name" value=j.name.clone()/>
                                                        <div class="actions" role="group" aria-label=format!("Actions on {}", j.name)>
                                                            {if j.paused {
                                                                view! { <button type="submit" name="action" value="resume" on:click=press("resume")>"Resume"</button> }.into_any()
                                                            } else {
                                                                view! { <button type="submit" name="action" value="pause" on:click=press("pause")>"Pause"</button> }.into_any()
                                                            }}
                                                            <button type="submit" name="action" value="trigger" on:click=press("trigger")>"Trigger now"</button>
                                                        </div>
                                                    </form>
                                                </td>
                                            </tr>
                                        }
                                    }).collect::<Vec<_>>()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

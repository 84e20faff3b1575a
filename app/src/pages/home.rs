//! The start page: what the product is, and the job engine's live counts, streamed
//! over gRPC-web once the page is hydrated.

use leptos::prelude::*;
use proto::jobs::v1::JobCounts;

/// `/`.
#[component]
pub fn HomePage() -> impl IntoView {
    // Becomes true only in the browser, once hydration has run this component.
    let (interactive, set_interactive) = signal(false);
    Effect::new(move |_| set_interactive.set(true));
    view! {
        <section class="card">
            <h1>"Back office"</h1>
            <p>"Tenants are provisioned by durable background jobs; this page follows them live."</p>
            <p class="status" data-testid="hydrated">
                {move || if interactive.get() { "interactive" } else { "server-rendered" }}
            </p>
        </section>
        <LiveJobCounts/>
    }
}

/// The job counts, kept current by `JobService.WatchCounts` (a server stream).
#[component]
pub fn LiveJobCounts() -> impl IntoView {
    let (counts, set_counts) = signal(None::<JobCounts>);
    let (updates, set_updates) = signal(0u64);
    let (error, set_error) = signal(None::<String>);
    Effect::new(move |_| {
        crate::grpc::watch_counts(
            move |c| {
                set_counts.set(Some(c));
                set_updates.update(|n| *n += 1);
                set_error.set(None);
            },
            move |e| set_error.set(Some(e)),
        );
    });
    let cell = move |label: &'static str, get: fn(&JobCounts) -> u64| {
        view! {
            <div class="count">
                <dt>{label}</dt>
                <dd data-testid=format!("count-{label}")>
                    {move || counts.get().map(|c| get(&c).to_string()).unwrap_or_else(|| "–".into())}
                </dd>
            </div>
        }
    };
    view! {
        <section class="card" aria-labelledby="jobs-heading">
            <h2 id="jobs-heading">"Jobs"</h2>
            <dl class="counts">
                {cell("enqueued", |c| c.enqueued)}
                {cell("processing", |c| c.processing)}
                {cell("scheduled", |c| c.scheduled)}
                {cell("succeeded", |c| c.succeeded)}
                {cell("dead", |c| c.dead)}
                {cell("deleted", |c| c.deleted)}
            </dl>
            <p class="muted" data-testid="updates">"updates received: " {move || updates.get()}</p>
            <Show when=move || error.get().is_some()>
                <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
        </section>
    }
}

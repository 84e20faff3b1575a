//! The toast area on every signed-in page: follows
//! `NotificationService.Subscribe` over gRPC-web and shows each notification as a
//! toast (green success, red error), stacked in the page's flow between the top
//! bar and the content (so they cover nothing), dismissable, hidden after
//! [`SHOW_MS`], announced to screen readers (`role="status"`, `aria-live`). A toast
//! is acknowledged once dismissed or hidden, so one that was never shown comes
//! back on the next page load; after a dropped stream it resumes after the last
//! one received.

use leptos::prelude::*;
use proto::notifications::v1 as pb;
use proto::notifications::v1::notification_service_client::NotificationServiceClient;

/// How long a toast stays.
pub const SHOW_MS: i32 = 8000;
/// Most toasts shown at once (the newest); the rest wait, counted, so a backlog
/// replayed after a while away does not push the page far down.
pub const MAX_SHOWN: usize = 3;

#[derive(Clone, Debug, PartialEq)]
struct Toast {
    id: i64,
    success: bool,
    title: String,
    body: String,
    link: String,
}

fn ack(id: i64) {
    crate::grpc::spawn(async move {
        let mut c = NotificationServiceClient::new(crate::grpc::channel());
        let _ = c.ack(pb::AckRequest { ids: vec![id] }).await;
    });
}

/// The toast area.
#[component]
pub fn Toasts() -> impl IntoView {
    let (toasts, set_toasts) = signal(Vec::<Toast>::new());
    let (live, set_live) = signal(false);
    let dismiss = move |id: i64| {
        let mut was_shown = false;
        set_toasts.update(|t| {
            // Shown means among the newest MAX_SHOWN: one that expired while
            // waiting was never seen, and comes back on the next page load.
            was_shown = t.iter().rev().take(MAX_SHOWN).any(|x| x.id == id);
            t.retain(|x| x.id != id);
        });
        if was_shown {
            ack(id);
        }
    };
    Effect::new(move |_| {
        crate::grpc::spawn(async move {
            let mut last = 0i64;
            loop {
                let mut c = NotificationServiceClient::new(crate::grpc::channel());
                if let Ok(resp) = c.subscribe(pb::SubscribeRequest { resume_after: last }).await {
                    set_live.set(true);
                    let mut stream = resp.into_inner();
                    while let Ok(Some(msg)) = stream.message().await {
                        let Some(pb::subscribe_response::Event::Notification(n)) = msg.event else { continue };
                        last = last.max(n.id);
                        let toast = Toast {
                            id: n.id,
                            success: n.kind != pb::Kind::Error as i32,
                            title: n.title,
                            body: n.body,
                            link: n.link,
                        };
                        set_toasts.update(|t| t.push(toast));
                        let id = n.id;
                        crate::grpc::spawn(async move {
                            crate::grpc::sleep_ms(SHOW_MS).await;
                            dismiss(id);
                        });
                    }
                }
                set_live.set(false);
                crate::grpc::sleep_ms(2000).await;
            }
        });
    });
    view! {
        <aside class="toasts-area" aria-label="Notifications">
        <div class="toasts" role="status" aria-live="polite" aria-atomic="false"
            data-live=move || live.get().to_string()>
            <Show when=move || toasts.with(|t| t.len() > MAX_SHOWN)>
                <p class="toast-more" data-testid="toast-more">
                    {move || format!("{} more notifications", toasts.with(|t| t.len().saturating_sub(MAX_SHOWN)))}
                </p>
            </Show>
            <For each=move || { let t = toasts.get(); let skip = t.len().saturating_sub(MAX_SHOWN); t.into_iter().skip(skip).collect::<Vec<_>>() } key=|t| t.id let:t>
                <div class=if t.success { "toast toast-success" } else { "toast toast-error" } data-testid="toast">
                    <div>
                        <strong>{t.title.clone()}</strong>
                        <p>{t.body.clone()}</p>
                        {(!t.link.is_empty()).then(|| view! { <a href=t.link.clone()>"Open"</a> })}
                    </div>
                    <button type="button" class="toast-close" aria-label="Dismiss" on:click=move |_| dismiss(t.id)>
                        "×"
                    </button>
                </div>
            </For>
        </div>
        </aside>
    }
}

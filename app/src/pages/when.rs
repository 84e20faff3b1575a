//! When something is due, as people say it: "in 5 min", "2 h ago".
//!
//! The server renders only the absolute time (UTC): it cannot know the
//! browser's clock, and a relative time computed on the server would disagree
//! with the one hydration computes. Once hydrated, [`now`] ticks in the browser
//! and [`Due`] adds the relative part.

use leptos::prelude::*;

/// The browser's clock in Unix milliseconds, updated every 10 s; `None` on the
/// server and before hydration.
pub fn now() -> ReadSignal<Option<i64>> {
    let (now, set_now) = signal(None::<i64>);
    Effect::new(move |_| {
        set_now.set(Some(browser_now()));
        crate::grpc::spawn_scoped(async move {
            loop {
                crate::grpc::sleep_ms(10_000).await;
                set_now.set(Some(browser_now()));
            }
        });
    });
    now
}

/// Unix milliseconds from the browser's clock (only called in effects, which
/// run in the browser).
fn browser_now() -> i64 {
    window().performance().map_or(0, |p| (p.time_origin() + p.now()) as i64)
}

/// `at_ms` relative to `now_ms`: "now", "in 40 s", "in 5 min", "in 3 h 10 min",
/// "in 1 day 23 h", "in 2 days", or the same with "ago".
pub fn relative(at_ms: i64, now_ms: i64) -> String {
    let diff = at_ms - now_ms;
    let secs = diff.unsigned_abs() / 1000;
    let span = match secs {
        0..5 => return "now".to_owned(),
        5..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 if (secs % 3600) / 60 == 0 => format!("{} h", secs / 3600),
        3600..86_400 => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
        _ => {
            let (days, hours) = (secs / 86_400, (secs % 86_400) / 3600);
            let days = if days == 1 { "1 day".to_owned() } else { format!("{days} days") };
            if hours == 0 { days } else { format!("{days} {hours} h") }
        }
    };
    if diff > 0 { format!("in {span}") } else { format!("{span} ago") }
}

/// A due time: "in 5 min · at 2026-11-30 05:00:00 UTC" (the relative part once
/// hydrated), or "–" for none.
#[component]
pub fn Due(
    /// The due time, Unix milliseconds (0: none).
    ms: i64,
    /// The browser's clock ([`now`]).
    now: ReadSignal<Option<i64>>,
) -> impl IntoView {
    if ms <= 0 {
        return view! { <span>"–"</span> }.into_any();
    }
    view! {
        <span data-due=ms.to_string()>
            <strong data-testid="due-relative">{move || now.get().map(|n| format!("{} · ", relative(ms, n)))}</strong>
            "at " {super::hangfire::time(ms)} " UTC"
        </span>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn says_it_like_people_do() {
        let t = 1_700_000_000_000;
        assert_eq!(relative(t + 2_000, t), "now");
        assert_eq!(relative(t + 40_000, t), "in 40 s");
        assert_eq!(relative(t + 5 * 60_000 + 10_000, t), "in 5 min");
        assert_eq!(relative(t + 3 * 3_600_000, t), "in 3 h");
        assert_eq!(relative(t + 3 * 3_600_000 + 10 * 60_000, t), "in 3 h 10 min");
        assert_eq!(relative(t + 2 * 86_400_000, t), "in 2 days");
        assert_eq!(relative(t + 2 * 86_400_000 - 30_000, t), "in 1 day 23 h");
        assert_eq!(relative(t - 2 * 3_600_000, t), "2 h ago");
    }
}

//! One module per page, plus the frame's pieces shared by all.

pub mod admin;
pub mod hangfire;
pub mod home;
pub mod login;
pub mod signup;
pub mod tenant_home;

use leptos::prelude::*;

use crate::session::use_session;

/// Sets the HTTP status of the page being rendered (server only).
pub fn set_status(_code: u16) {
    #[cfg(feature = "ssr")]
    {
        if let (Some(resp), Ok(code)) =
            (use_context::<leptos_axum::ResponseOptions>(), http::StatusCode::from_u16(_code))
        {
            resp.set_status(code);
        }
    }
}

/// The top bar: what the signed-in user may open, and sign-out.
#[component]
pub fn Nav() -> impl IntoView {
    let session = use_session();
    let sign_out = move |_| {
        crate::grpc::spawn(async move {
            let mut auth = proto::auth::v1::auth_service_client::AuthServiceClient::new(crate::grpc::channel());
            let _ = auth.logout(proto::auth::v1::LogoutRequest {}).await;
            crate::grpc::go("/login");
        });
    };
    let links = match &session {
        Some(s) if s.is_super_admin() => view! {
            <a href="/admin/tenants">"Tenants"</a>
            <a href="/hangfire">"Jobs"</a>
        }
        .into_any(),
        Some(_) => view! { <a href="/app">"My workspace"</a> }.into_any(),
        None => view! {
            <a href="/signup">"Sign up"</a>
            <a href="/login">"Sign in"</a>
        }
        .into_any(),
    };
    view! {
        <header class="topbar">
            <nav aria-label="Main">
                <a class="brand" href="/">"Back office"</a>
                {links}
                {session.map(|s| view! {
                    <span class="who" data-testid="who">{s.email}</span>
                    <button type="button" class="link" on:click=sign_out>"Sign out"</button>
                })}
            </nav>
        </header>
    }
}

/// Any path no route matches.
#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <section class="card">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the start page"</a></p>
        </section>
    }
}

/// Signed in, but not allowed here (answered with HTTP 403).
#[component]
pub fn Forbidden() -> impl IntoView {
    set_status(403);
    view! {
        <section class="card">
            <h1>"Not allowed"</h1>
            <p>"Only super admins may open this page."</p>
            <p><a href="/">"Back to the start page"</a></p>
        </section>
    }
}

/// Shows `children` to super admins and [`Forbidden`] to anyone else. (The
/// server sends anonymous visitors of these pages to `/login` before rendering,
/// and refuses every call behind them for non-super-admins.)
#[component]
pub fn SuperAdminOnly(children: ChildrenFn) -> impl IntoView {
    let allowed = use_session().is_some_and(|s| s.is_super_admin());
    move || if allowed { children().into_any() } else { view! { <Forbidden/> }.into_any() }
}

/// A field's error message, linked to its input for screen readers.
#[component]
pub fn FieldError(
    /// The element id (the input's `aria-describedby`).
    id: &'static str,
    /// `(field, message)` pairs.
    errors: ReadSignal<Vec<(String, String)>>,
    /// The field shown.
    field: &'static str,
) -> impl IntoView {
    let text =
        move || errors.get().into_iter().filter(|(f, _)| f == field).map(|(_, m)| m).collect::<Vec<_>>().join("; ");
    view! {
        <p class="field-error" id=id role="alert" hidden=move || text().is_empty()>{text}</p>
    }
}

/// Errors not tied to a field.
#[component]
pub fn FormError(
    /// `(field, message)` pairs.
    errors: ReadSignal<Vec<(String, String)>>,
    /// Fields shown next to their inputs instead.
    fields: &'static [&'static str],
) -> impl IntoView {
    let text = move || {
        errors
            .get()
            .into_iter()
            .filter(|(f, _)| !fields.contains(&f.as_str()))
            .map(|(f, m)| if f.is_empty() { m } else { format!("{f}: {m}") })
            .collect::<Vec<_>>()
            .join("; ")
    };
    view! { <p class="form-error" role="alert" hidden=move || text().is_empty()>{text}</p> }
}

/// The value of an input in an event's form, by name.
pub fn form_value(form: &web_sys::HtmlFormElement, name: &str) -> String {
    use leptos::wasm_bindgen::JsCast;
    form.elements()
        .named_item(name)
        .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|i| i.value())
        .unwrap_or_default()
}

/// The form a submit event came from, with the browser's default submit stopped.
pub fn submitted_form(ev: &leptos::ev::SubmitEvent) -> Option<web_sys::HtmlFormElement> {
    use leptos::wasm_bindgen::JsCast;
    ev.prevent_default();
    ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
}

/// A query-string parameter of the current page (browser only; empty on the
/// server).
pub fn query_param(name: &str) -> String {
    let q = leptos_router::hooks::use_query_map();
    q.with_untracked(|m| m.get(name).unwrap_or_default())
}

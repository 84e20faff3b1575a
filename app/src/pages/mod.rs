//! One module per page, plus the frame's pieces shared by all.
//!
//! # Forms
//! Every form is a real `<form method="post">` whose action the server answers
//! itself (`server/src/forms.rs`): with JavaScript off, or before the wasm has
//! loaded, the browser posts it, and the server replies with a redirect (303) or
//! renders the same page again with the errors ([`Submitted`]). Once hydrated,
//! the app intercepts the submit and makes the same `proto` call over gRPC-web.
//! Either way invalid inputs get `aria-invalid` and `aria-describedby` pointing
//! at their message, and focus moves to the first problem.

pub mod admin;
pub mod admin_import;
pub mod hangfire;
pub mod hangfire_batches;
pub mod hangfire_recurring;
pub mod home;
pub mod login;
pub mod mail;
pub mod new_link;
pub mod signup;
pub mod tenant_home;
pub mod when;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_location, use_query_map};
use serde::{Deserialize, Serialize};

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

/// A top-bar link, `aria-current="page"` while its section is shown.
#[component]
fn NavLink(href: &'static str, label: &'static str) -> impl IntoView {
    let location = use_location();
    let current = move || {
        let path = location.pathname.get();
        (path == href || path.starts_with(&format!("{href}/"))).then_some("page")
    };
    view! { <a href=href aria-current=current>{label}</a> }
}

/// The top bar: what the signed-in user may open, and sign-out (a plain POST
/// form: it works before hydration too).
#[component]
pub fn Nav() -> impl IntoView {
    let session = use_session();
    let links = match &session {
        Some(s) if s.is_super_admin() => view! {
            <NavLink href="/admin/tenants" label="Tenants"/>
            <NavLink href="/hangfire" label="Jobs"/>
            <NavLink href="/admin/mail" label="Mailbox"/>
        }
        .into_any(),
        Some(_) => view! { <NavLink href="/app" label="My workspace"/> }.into_any(),
        None => view! {
            <NavLink href="/signup" label="Register"/>
            <NavLink href="/login" label="Sign in"/>
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
                    <form method="post" action="/logout" class="signout">
                        <button type="submit" class="link">"Sign out"</button>
                    </form>
                })}
            </nav>
        </header>
    }
}

/// Any path no route matches, and records that do not exist (HTTP 404).
#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <Title text="Not found"/>
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
        <Title text="Not allowed"/>
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

/// `(field, message)` pairs; a message for the whole form has the field `""`.
pub type Errors = Vec<(String, String)>;

/// What the server's plain-POST handler hands the page it renders again: which
/// form, what was typed (never passwords) and what was wrong. Shared with the
/// browser through the page (a `SharedValue`), so hydration shows the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The form's name (its `data-form`).
    pub form: String,
    /// Values to put back into the inputs.
    pub values: Vec<(String, String)>,
    /// The problems.
    pub errors: Errors,
}

impl Submitted {
    /// The value typed into `name`, or `""`.
    pub fn value(&self, name: &str) -> String {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// The outcome of a plain POST of `form` that this render shows, if any. Call
/// once per form, unconditionally, in the page component (shared values are
/// matched by order).
pub fn submitted(form: &'static str) -> Submitted {
    SharedValue::new(move || from_server(form)).into_inner()
}

#[cfg(feature = "ssr")]
fn from_server(form: &str) -> Submitted {
    use_context::<Submitted>().filter(|s| s.form == form).unwrap_or_default()
}

#[cfg(not(feature = "ssr"))]
fn from_server(_form: &str) -> Submitted {
    Submitted::default()
}

/// A labelled input tied to its error message for assistive technology:
/// `aria-invalid` and `aria-describedby` while it has a problem; `autofocus`
/// when it is the first problem of a server-rendered answer (no script needed).
#[component]
pub fn Field(
    /// The input's `name` and `id`.
    name: &'static str,
    /// The visible label.
    label: &'static str,
    /// The form's errors.
    errors: RwSignal<Errors>,
    /// The input `type`.
    #[prop(default = "text")]
    kind: &'static str,
    /// The `autocomplete` hint.
    #[prop(default = "off")]
    autocomplete: &'static str,
    /// What to show in the input at first.
    #[prop(optional)]
    value: String,
    /// Whether this is the first problem (focused on first paint).
    #[prop(optional)]
    autofocus: bool,
) -> impl IntoView {
    let error_id = format!("{name}-error");
    let text = move || {
        errors.with(|e| e.iter().filter(|(f, _)| f == name).map(|(_, m)| m.clone()).collect::<Vec<_>>().join("; "))
    };
    let invalid = move || !text().is_empty();
    view! {
        <label for=name>{label}</label>
        <input id=name name=name type=kind autocomplete=autocomplete value=value autofocus=autofocus
            aria-invalid=move || invalid().then_some("true")
            aria-describedby={let id = error_id.clone(); move || invalid().then(|| id.clone())}/>
        <p class="field-error" id=error_id hidden=move || !invalid()>{text}</p>
    }
}

/// Errors not tied to a shown field, announced and focusable.
#[component]
pub fn FormError(
    /// The form's errors.
    errors: RwSignal<Errors>,
    /// Fields shown next to their inputs instead.
    fields: &'static [&'static str],
    /// Focus it on first paint (a server-rendered answer whose problem is not
    /// a field's).
    #[prop(optional)]
    autofocus: bool,
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
    view! { <p class="form-error" role="alert" tabindex="-1" autofocus=autofocus hidden=move || text().is_empty()>{text}</p> }
}

/// The first field of `errors` that is one of `fields` (in form order), for
/// `autofocus` on a server-rendered answer.
pub fn first_invalid(errors: &Errors, fields: &[&'static str]) -> Option<&'static str> {
    fields.iter().copied().find(|f| errors.iter().any(|(e, _)| e == f))
}

/// After the page shows new errors: focus the first invalid input of `form`, or
/// its general error message. Waits a frame so the DOM has the new state.
pub fn focus_first_error(form: web_sys::HtmlFormElement) {
    request_animation_frame(move || {
        use leptos::wasm_bindgen::JsCast;
        let target = form
            .query_selector("[aria-invalid=\"true\"]")
            .ok()
            .flatten()
            .or_else(|| form.query_selector(".form-error:not([hidden])").ok().flatten())
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(el) = target {
            let _ = el.focus();
        }
    });
}

/// Moves focus to the element with `id` after the next frame (a confirmation
/// that just appeared, so focus is not left on a control that went away).
pub fn focus_id(id: &'static str) {
    request_animation_frame(move || {
        use leptos::wasm_bindgen::JsCast;
        if let Some(el) = document().get_element_by_id(id).and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
            let _ = el.focus();
        }
    });
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

/// The form a submit event came from, with the browser's own submit stopped (the
/// hydrated app makes the call itself).
pub fn submitted_form(ev: &leptos::ev::SubmitEvent) -> Option<web_sys::HtmlFormElement> {
    use leptos::wasm_bindgen::JsCast;
    ev.prevent_default();
    ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
}

/// A query-string parameter of the current page, tracked: the page follows
/// client-side navigation.
pub fn query_param(name: &'static str) -> Memo<String> {
    let q = use_query_map();
    Memo::new(move |_| q.read().get(name).unwrap_or_default())
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

//! The tenants page's "Bulk import" form: paste CSV (`name,admin email` lines)
//! or pick a file (read into the text box in the browser), send it with
//! `ImportTenants`, and see either every bad row's problem (nothing is created
//! then) or the import's batch progressing live until it has finished.
//!
//! Without JavaScript the form posts to `/admin/tenants/import` (see the server's
//! `forms`): errors come back on this page; success leads to
//! `/admin/tenants?import=<batch>`, which shows the same live progress once the
//! page runs, and the batch's state as of the render before.

use leptos::prelude::*;
use proto::tenants::v1 as pb;
use proto::tenants::v1::tenant_service_client::TenantServiceClient;

use super::hangfire_batches::BatchDetail;
use super::{query_param, submitted, submitted_form};

/// "rows[3].admin_email" → "Line 3, admin email"; "csv" → "The file".
fn where_of(field: &str) -> String {
    if let Some(rest) = field.strip_prefix("rows[")
        && let Some((line, name)) = rest.split_once("].")
    {
        return format!("Line {line}, {}", name.replace('_', " "));
    }
    if field == "csv" { "The file".to_owned() } else { field.to_owned() }
}

/// The text of the textarea `name` in `form`.
fn textarea_value(form: &web_sys::HtmlFormElement, name: &str) -> String {
    use leptos::wasm_bindgen::JsCast;
    form.elements()
        .named_item(name)
        .and_then(|e| e.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
        .map(|t| t.value())
        .unwrap_or_default()
}

/// The bulk import form and what follows it.
#[component]
pub fn BulkImport() -> impl IntoView {
    let sent = submitted("import-tenants");
    let errors = RwSignal::new(sent.errors.clone());
    let imported = query_param("import");
    let batch = RwSignal::new(None::<i64>);
    let text = RwSignal::new(sent.value("csv"));
    let (busy, set_busy) = signal(false);
    let shown_batch = move || batch.get().or_else(|| imported.get().parse::<i64>().ok().filter(|n| *n > 0));
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        let Some(form) = submitted_form(&ev) else { return };
        if busy.get_untracked() {
            return;
        }
        let req = pb::ImportTenantsRequest { csv: textarea_value(&form, "csv") };
        set_busy.set(true);
        crate::grpc::spawn(async move {
            match TenantServiceClient::new(crate::grpc::channel()).import_tenants(req).await {
                Ok(r) => {
                    errors.set(Vec::new());
                    batch.set(Some(r.into_inner().batch_id));
                    text.set(String::new());
                }
                Err(s) => {
                    batch.set(None);
                    errors.set(crate::grpc::field_errors(&s));
                    super::focus_id("import-errors");
                }
            }
            set_busy.set(false);
        });
    };
    let on_file = move |ev: leptos::ev::Event| {
        use leptos::wasm_bindgen::JsCast;
        let file = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|i| i.files())
            .and_then(|f| f.get(0));
        if let Some(file) = file {
            crate::grpc::spawn(async move {
                if let Ok(v) = wasm_bindgen_futures::JsFuture::from(file.text()).await {
                    text.set(v.as_string().unwrap_or_default());
                }
            });
        }
    };
    view! {
        <section class="card">
            <h2>"Bulk import"</h2>
            <p class="muted">
                "One tenant per line: " <code>"name,admin email"</code> " (a header line is optional; quote names with commas). "
                "Up to 1,000 rows. If any row is wrong, nothing is created: fix the rows listed and send the file again."
            </p>
            <form method="post" action="/admin/tenants/import" data-form="import-tenants" on:submit=on_submit
                novalidate aria-label="Bulk import tenants">
                <label for="import-file">"CSV file"</label>
                <input id="import-file" type="file" accept=".csv,text/csv,text/plain" on:change=on_file/>
                <label for="csv">"Or paste the rows"</label>
                <textarea id="csv" name="csv" rows="6" data-testid="import-csv"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))>{sent.value("csv")}</textarea>
                <button type="submit" aria-disabled=move || busy.get().then_some("true")>"Import tenants"</button>
            </form>
            <div id="import-errors" tabindex="-1" role="alert" hidden=move || errors.with(Vec::is_empty)>
                <p class="error">"Nothing was created. Fix these rows and send the file again:"</p>
                <ul class="field-error" data-testid="import-errors">
                    {move || errors.get().into_iter().map(|(field, message)| view! {
                        <li data-field=field.clone()>{where_of(&field)} ": " {message}</li>
                    }).collect::<Vec<_>>()}
                </ul>
            </div>
            {move || shown_batch().map(|id| view! {
                <p class="notice" role="status" data-testid="import-started">
                    "Import started: the tenants are being provisioned. You will be notified once when all are done."
                </p>
                <BatchDetail id/>
            })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_paths_read_as_words() {
        assert_eq!(where_of("rows[3].admin_email"), "Line 3, admin email");
        assert_eq!(where_of("csv"), "The file");
    }
}

//! Names that only look alike are one name: the Unicode work behind
//! [`super::TenantName`].
//!
//! - Bidirectional controls (they reorder what a reader sees: `U+202E` makes
//!   "Acme\u{202E}gnp.exe" read as "Acmeexe.png") and the byte-order mark are
//!   refused, with the code point named;
//! - other format characters (`Cf`: zero-width space and joiners, soft hyphen,
//!   word joiner, tags) are invisible and are stripped;
//! - the rest is normalised to NFKC, so NFC and NFD "école" and full-width
//!   "Ａｃｍｅ" are the names "école" and "Acme";
//! - [`skeleton`] is Unicode TR39's confusable skeleton, made case-insensitive,
//!   so Cyrillic "Аcme" and Latin "Acme" share one key, which the control plane
//!   keeps unique.
//!
//! The tables come from crates (`unicode-normalization`, `unicode-security`,
//! `unicode-properties`), which track Unicode's data files; nothing here lists
//! characters by hand except the bidi controls, which Unicode names one by one
//! (UAX #9, "Explicit Directional Formatting Characters").

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Characters refused outright: the explicit bidi formatting characters (UAX
/// #9: embeddings, overrides, isolates, marks) and the byte-order mark.
fn refused(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{FEFF}')
}

/// `raw` with invisible format characters removed and normalised to NFKC, or
/// the first refused character (see the module docs).
///
/// # Errors
/// The first bidirectional control or byte-order mark in `raw`.
pub fn normalise(raw: &str) -> Result<String, char> {
    if let Some(c) = raw.chars().find(|c| refused(*c)) {
        return Err(c);
    }
    Ok(raw.chars().filter(|c| c.general_category() != GeneralCategory::Format).nfkc().collect())
}

/// The case-insensitive TR39 skeleton of an (already normalised) name: the
/// skeleton, lower-cased, skeletonised again (lower-casing can yield a letter
/// with a prototype of its own: "ACME" → "acme" → "acrne", like "Acme").
pub fn skeleton(name: &str) -> String {
    let once: String = unicode_security::skeleton(name).collect::<String>().to_lowercase();
    unicode_security::skeleton(&once).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_the_bom_are_refused() {
        for (raw, c) in [("Acme\u{202E}gnp", '\u{202E}'), ("\u{FEFF}Acme", '\u{FEFF}'), ("Ac\u{2066}me", '\u{2066}')] {
            assert_eq!(normalise(raw), Err(c), "{raw:?}");
        }
    }

    #[test]
    fn invisible_characters_go_and_forms_fold() {
        for raw in ["Ac\u{200B}me", "Acme\u{200D}", "Ａｃｍｅ", "Ac\u{00AD}me", "Acme\u{2060}"] {
            assert_eq!(normalise(raw).as_deref(), Ok("Acme"), "{raw:?}");
        }
        assert_eq!(normalise("e\u{301}cole"), normalise("\u{E9}cole"));
        assert_eq!(normalise("e\u{301}cole").as_deref(), Ok("\u{E9}cole"));
    }

    #[test]
    fn lookalikes_share_a_skeleton() {
        let acme = skeleton("Acme");
        for other in ["\u{410}cme", "ACME", "acme", "Acrne", "\u{410}\u{421}\u{39C}\u{395}"] {
            assert_eq!(skeleton(other), acme, "{other:?}");
        }
        assert_eq!(skeleton("AppIe"), skeleton("apple"));
        for different in ["Acne", "Acme Corp", "Apex"] {
            assert_ne!(skeleton(different), acme, "{different:?}");
        }
    }

    /// The issue's table, through the type every entry point uses.
    #[test]
    fn tenant_names_from_the_issue() {
        use crate::validate::TenantName;
        let acme = TenantName::parse("name", "Acme").expect("plain");
        for raw in ["Ac\u{200B}me", "Acme\u{200D}", "\u{FF21}\u{FF43}\u{FF4D}\u{FF45}"] {
            let n = TenantName::parse("name", raw).expect(raw);
            assert_eq!((n.as_str(), n.key()), ("Acme", acme.key()), "{raw:?}");
        }
        let cyrillic = TenantName::parse("name", "\u{410}cme").expect("a letter is a letter");
        assert_ne!(cyrillic.key(), acme.key());
        assert_eq!(cyrillic.skeleton(), acme.skeleton(), "one skeleton: taken");
        let nfc = TenantName::parse("name", "\u{E9}cole").expect("NFC");
        let nfd = TenantName::parse("name", "e\u{301}cole").expect("NFD");
        assert_eq!(nfc, nfd);
        for raw in ["Acme\u{202E}", "\u{FEFF}Acme"] {
            let e = TenantName::parse("company_name", raw).expect_err(raw);
            assert_eq!(e.field, "company_name");
            assert!(e.message.starts_with("must not contain U+"), "{e:?}");
        }
        // Only invisible characters: nothing left.
        assert!(TenantName::parse("name", "\u{200B}\u{200B}").is_err());
    }
}

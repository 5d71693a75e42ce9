//! Placeholders in template text: `{source}`, `{condition}`, `{priority}`, `{site}`,
//! `{occurred_at}` and `{attr.<name>}`; `{{` and `}}` are literal braces. Unknown names are refused
//! when a template is saved; a value the alarm or event lacks is rendered as a visible marker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The placeholders every template may name (besides `attr.<name>`).
pub const NAMES: &[&str] = &["source", "condition", "priority", "site", "occurred_at"];
/// Longest attribute name after `attr.`.
const MAX_ATTR_NAME: usize = 64;

/// What went wrong in a text's placeholders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error(
        "unknown placeholder {{{0}}}; known: source, condition, priority, site, occurred_at, attr.<name>"
    )]
    Unknown(String),
    #[error("a '{{' is not closed by '}}' (write '{{{{' for a literal brace)")]
    Unclosed,
    #[error("a '}}' has no '{{' (write '}}}}' for a literal brace)")]
    Unopened,
}

/// The values an incident is opened with: from the alarm or event that opened it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Context {
    pub source: Option<String>,
    pub condition: Option<String>,
    pub priority: Option<String>,
    pub site: Option<String>,
    /// RFC 3339, UTC.
    pub occurred_at: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Context {
    fn value(&self, name: &str) -> Option<&str> {
        match name {
            "source" => self.source.as_deref(),
            "condition" => self.condition.as_deref(),
            "priority" => self.priority.as_deref(),
            "site" => self.site.as_deref(),
            "occurred_at" => self.occurred_at.as_deref(),
            _ => name
                .strip_prefix("attr.")
                .and_then(|a| self.attributes.get(a))
                .map(String::as_str),
        }
    }
}

fn known(name: &str) -> bool {
    NAMES.contains(&name)
        || name.strip_prefix("attr.").is_some_and(|a| {
            (1..=MAX_ATTR_NAME).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        })
}

/// A piece of parsed text.
enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

fn parse(text: &str) -> Result<Vec<Piece<'_>>, PlaceholderError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 1..];
        if rest[i..].starts_with("{{") {
            out.push(Piece::Text("{"));
            rest = &rest[i + 2..];
        } else if rest[i..].starts_with("}}") {
            out.push(Piece::Text("}"));
            rest = &rest[i + 2..];
        } else if rest[i..].starts_with('}') {
            return Err(PlaceholderError::Unopened);
        } else {
            let end = after.find('}').ok_or(PlaceholderError::Unclosed)?;
            let name = after[..end].trim();
            if !known(name) {
                return Err(PlaceholderError::Unknown(name.chars().take(64).collect()));
            }
            out.push(Piece::Name(name));
            rest = &after[end + 1..];
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Checks that every placeholder of `text` is known and every brace is balanced.
pub fn check(text: &str) -> Result<(), PlaceholderError> {
    parse(text).map(|_| ())
}

/// Fills `text` from `ctx`; a missing value shows as `‹missing: name›`, never as nothing.
/// Text that does not parse (it was checked when saved) is returned as it is.
pub fn fill(text: &str, ctx: &Context) -> String {
    let Ok(pieces) = parse(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(n) => match ctx.value(n) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("‹missing: ");
                    out.push_str(n);
                    out.push('›');
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_names_and_marks_missing_ones() {
        let mut ctx = Context {
            source: Some("pump-7".into()),
            ..Context::default()
        };
        ctx.attributes.insert("bar".into(), "4.2".into());
        assert_eq!(
            fill("{source} at {attr.bar} bar, {condition}", &ctx),
            "pump-7 at 4.2 bar, ‹missing: condition›"
        );
        assert_eq!(
            fill("{{literal}} {attr.x}", &ctx),
            "{literal} ‹missing: attr.x›"
        );
    }

    #[test]
    fn refuses_unknown_and_unbalanced() {
        assert_eq!(
            check("{sauce}"),
            Err(PlaceholderError::Unknown("sauce".into()))
        );
        assert_eq!(
            check("{attr.}"),
            Err(PlaceholderError::Unknown("attr.".into()))
        );
        assert_eq!(check("{source"), Err(PlaceholderError::Unclosed));
        assert_eq!(check("a } b"), Err(PlaceholderError::Unopened));
        assert!(check("{ source } {attr.flow_rate} {{x}}").is_ok());
    }
}

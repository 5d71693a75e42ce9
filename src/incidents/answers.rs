//! Checking structured answers against a pinned template version: type, length, pattern, range,
//! decimals, options, required, RFC 3339 times and, for files, media type and size. Pure, apart
//! from the attachment lookup the caller does in its transaction with [`check_file`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::FieldErrors;
use super::pattern::Pattern;
use super::templates::{FieldType, Question, TemplateDef, question_ids};
use crate::store::AttachmentRef;

/// An answer that passed every check but the attachment's, which needs the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub answers: BTreeMap<String, Value>,
    /// (question id, attachment id) of every file answer.
    pub files: Vec<(String, String)>,
}

fn number_ok(q: &Question, v: &Value) -> Result<(), String> {
    let Some(x) = v.as_f64().filter(|x| x.is_finite()) else {
        return Err("must be a number".into());
    };
    if let Some(lo) = q.min
        && x < lo
    {
        return Err(format!("must be at least {lo}"));
    }
    if let Some(hi) = q.max
        && x > hi
    {
        return Err(format!("must be at most {hi}"));
    }
    if let Some(d) = q.decimals {
        let scaled = x * 10f64.powi(i32::from(d));
        if (scaled - scaled.round()).abs() > 1e-6 * scaled.abs().max(1.0) {
            return Err(format!("at most {d} decimals"));
        }
    }
    Ok(())
}

fn options(q: &Question) -> &[String] {
    q.options.as_deref().unwrap_or(&[])
}

/// Checks one non-null value; `Some(id)` for a file answer's attachment.
fn one(q: &Question, v: &Value) -> Result<Option<String>, String> {
    let Some(kind) = q.field() else {
        return Err("this question has an unknown type".into());
    };
    match kind {
        FieldType::Text => {
            let s = v.as_str().ok_or("must be text")?;
            if q.required && s.trim().is_empty() {
                return Err("required".into());
            }
            let n = s.chars().count();
            if n > q.max_len() as usize {
                return Err(format!("at most {} characters", q.max_len()));
            }
            if !crate::chat::clean_text(s) {
                return Err("contains control characters".into());
            }
            if let Some(p) = &q.pattern
                && !Pattern::parse(p).is_ok_and(|p| p.is_match(s))
            {
                return Err(format!("must match the pattern {p}"));
            }
            Ok(None)
        }
        FieldType::Number => number_ok(q, v).map(|()| None),
        FieldType::Choice => {
            let s = v.as_str().ok_or("must be one of the options")?;
            if options(q).iter().any(|o| o == s) {
                Ok(None)
            } else {
                Err(format!("{s:?} is not one of the options"))
            }
        }
        FieldType::MultiChoice => {
            let list = v.as_array().ok_or("must be a list of options")?;
            if q.required && list.is_empty() {
                return Err("required: choose at least one".into());
            }
            let mut seen = Vec::new();
            for item in list {
                let s = item.as_str().ok_or("must be a list of options")?;
                if !options(q).iter().any(|o| o == s) {
                    return Err(format!("{s:?} is not one of the options"));
                }
                if seen.contains(&s) {
                    return Err(format!("{s:?} is chosen twice"));
                }
                seen.push(s);
            }
            Ok(None)
        }
        FieldType::Boolean => v
            .as_bool()
            .map(|_| None)
            .ok_or("must be true or false".into()),
        FieldType::Datetime => {
            let s = v.as_str().ok_or("must be an RFC 3339 date and time")?;
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|_| None)
                .map_err(|_| "must be an RFC 3339 date and time, e.g. 2026-12-01T06:30:00Z".into())
        }
        FieldType::File => {
            let s = v
                .as_str()
                .ok_or("must be the id of an uploaded attachment")?;
            if s.is_empty() || s.len() > 80 {
                return Err("must be the id of an uploaded attachment".into());
            }
            Ok(Some(s.to_string()))
        }
    }
}

/// Checks `answers` (question id → value; `null` clears an optional answer) against `def`.
/// Every problem is reported, keyed by question id.
pub fn check(def: &TemplateDef, answers: &BTreeMap<String, Value>) -> Result<Checked, FieldErrors> {
    let qs = question_ids(def);
    let mut errs = FieldErrors::new();
    let mut files = Vec::new();
    if answers.is_empty() {
        errs.insert("answers".into(), "answer at least one question".into());
    }
    for (qid, v) in answers {
        let Some(q) = qs.get(qid.as_str()) else {
            errs.insert(
                qid.chars().take(64).collect(),
                "no such question in this incident's template version".into(),
            );
            continue;
        };
        if v.is_null() {
            if q.required {
                errs.insert(qid.clone(), "required".into());
            }
            continue;
        }
        match one(q, v) {
            Ok(Some(att)) => files.push((qid.clone(), att)),
            Ok(None) => {}
            Err(e) => {
                errs.insert(qid.clone(), e);
            }
        }
    }
    if errs.is_empty() {
        Ok(Checked {
            answers: answers.clone(),
            files,
        })
    } else {
        Err(errs)
    }
}

/// Whether an attachment fits a file question's media types and size.
pub fn check_file(q: &Question, a: &AttachmentRef) -> Result<(), String> {
    if let Some(max) = q.max_bytes
        && a.size > max
    {
        return Err(format!("the file is {} bytes; at most {max}", a.size));
    }
    let types = q.allowed_types.as_deref().unwrap_or(&[]);
    let mime = a.mime.to_ascii_lowercase();
    let fits = |t: &String| {
        let t = t.to_ascii_lowercase();
        match t.strip_suffix("/*") {
            Some(major) => mime.split('/').next() == Some(major),
            None => mime == t,
        }
    };
    if types.is_empty() || types.iter().any(fits) {
        Ok(())
    } else {
        Err(format!(
            "a {} file is not accepted here; allowed: {}",
            a.mime,
            types.join(", ")
        ))
    }
}

/// The required questions `answered` leaves unanswered.
pub fn missing_required(def: &TemplateDef, answered: &BTreeMap<String, u64>) -> FieldErrors {
    def.questions
        .iter()
        .filter(|q| q.required && !answered.contains_key(&q.id))
        .map(|q| {
            (
                q.id.clone(),
                "required before the incident is resolved".to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(kind: &str, extra: Value) -> Question {
        let mut v = json!({"id": "q", "label": "Q", "type": kind, "required": true});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(v).expect("question")
    }

    fn verdict(q: &Question, v: Value) -> Result<(), String> {
        let def = TemplateDef {
            name: "t".into(),
            title: "t".into(),
            questions: vec![q.clone()],
        };
        let answers = BTreeMap::from([("q".to_string(), v)]);
        check(&def, &answers)
            .map(|_| ())
            .map_err(|mut e| e.remove("q").unwrap_or_default())
    }

    #[test]
    fn each_type_accepts_and_refuses() {
        let text = q("text", json!({"max_length": 5, "pattern": "[A-Z]+"}));
        assert!(verdict(&text, json!("ABC")).is_ok());
        assert!(verdict(&text, json!("abc")).is_err());
        assert!(verdict(&text, json!("ABCDEF")).is_err());
        assert!(verdict(&text, json!(3)).is_err());
        let num = q("number", json!({"min": 0, "max": 10, "decimals": 1}));
        assert!(verdict(&num, json!(9.5)).is_ok());
        assert!(verdict(&num, json!(9.55)).is_err());
        assert!(verdict(&num, json!(11)).is_err());
        assert!(verdict(&num, json!("5")).is_err());
        let choice = q("choice", json!({"options": ["a", "b"]}));
        assert!(verdict(&choice, json!("a")).is_ok());
        assert!(verdict(&choice, json!("c")).is_err());
        let multi = q("multi_choice", json!({"options": ["a", "b"]}));
        assert!(verdict(&multi, json!(["a", "b"])).is_ok());
        assert!(verdict(&multi, json!(["a", "a"])).is_err());
        assert!(verdict(&multi, json!([])).is_err());
        let b = q("boolean", json!({}));
        assert!(verdict(&b, json!(false)).is_ok());
        assert!(verdict(&b, json!("yes")).is_err());
        let dt = q("datetime", json!({}));
        assert!(verdict(&dt, json!("2026-12-01T06:30:00Z")).is_ok());
        assert!(verdict(&dt, json!("yesterday")).is_err());
        assert!(verdict(&dt, Value::Null).is_err());
        let file = q(
            "file",
            json!({"allowed_types": ["image/*"], "max_bytes": 10}),
        );
        let att = |mime: &str, size| AttachmentRef {
            id: "a".into(),
            name: "n".into(),
            mime: mime.into(),
            size,
        };
        assert!(check_file(&file, &att("image/png", 10)).is_ok());
        assert!(check_file(&file, &att("text/plain", 10)).is_err());
        assert!(check_file(&file, &att("image/png", 11)).is_err());
    }
}

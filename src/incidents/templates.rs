//! Question templates: the definition, its checks at save (limits, field options, placeholders,
//! per-field errors), versions as `template.saved` entries, archiving, and reads. A template is
//! never deleted: incidents pin a version, and the definition of every version is its entry.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::pattern::Pattern;
use super::placeholders;
use super::{FieldErrors, IncidentError};
use crate::error::Rejection;
use crate::log::{AppendError, Author, Log, NewEntry, SubmitError, Tx};
use crate::store::{ReadTx, TemplateRow};

pub const KIND_SAVED: &str = "template.saved";
pub const KIND_ARCHIVED: &str = "template.archived";
pub const KIND_DELETED: &str = "template.deleted";

/// Most questions in one template.
pub const MAX_QUESTIONS: usize = 50;
/// Most options of a choice question.
pub const MAX_OPTIONS: usize = 50;
const MAX_OPTION_LEN: usize = 100;
const MAX_NAME: usize = 80;
const MAX_TITLE: usize = 200;
const MAX_LABEL: usize = 300;
const MAX_HELP: usize = 1000;
const MAX_UNIT: usize = 20;
const MAX_TYPES: usize = 20;
/// Longest text answer, and the default `max_length`.
pub const MAX_TEXT: u32 = 10_000;
const DEFAULT_TEXT: u32 = 2000;
/// Largest `max_bytes` of a file question (1 GiB).
const MAX_FILE_BYTES: u64 = 1 << 30;
/// Most templates on a site.
pub const MAX_TEMPLATES: usize = 500;

/// The stream of a template's entries.
pub fn stream_of(id: &str) -> String {
    format!("templates/{id}")
}

/// A question's field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Number,
    Choice,
    MultiChoice,
    Boolean,
    Datetime,
    File,
}

impl FieldType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "number" => Self::Number,
            "choice" => Self::Choice,
            "multi_choice" => Self::MultiChoice,
            "boolean" => Self::Boolean,
            "datetime" => Self::Datetime,
            "file" => Self::File,
            _ => return None,
        })
    }
}

/// One question, as sent and as stored (options that do not apply to its type are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// 1-32 of `a-z 0-9 _ -`, unique in the template.
    pub id: String,
    pub label: String,
    /// `text`, `number`, `choice`, `multi_choice`, `boolean`, `datetime` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// text: most characters (default 2000, at most 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// text: the pattern the whole answer matches (see docs/incidents.md for the subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// number: bounds, unit and most decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// choice, multi_choice: the options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// file: media types accepted (`image/png`, `image/*`); empty or absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_types: Option<Vec<String>>,
    /// file: the largest file accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

impl Question {
    /// The field type (checked when the template was saved).
    pub fn field(&self) -> Option<FieldType> {
        FieldType::parse(&self.kind)
    }

    pub fn max_len(&self) -> u32 {
        self.max_length.unwrap_or(DEFAULT_TEXT)
    }
}

/// A template definition: `POST /api/v1/templates` and `PUT /api/v1/templates/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub name: String,
    /// The incident title; may hold placeholders.
    pub title: String,
    pub questions: Vec<Question>,
}

/// A create request: the definition and, optionally, the id (a slug made from the name if not).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub title: String,
    pub questions: Vec<Question>,
}

impl NewTemplate {
    fn split(self) -> (Option<String>, TemplateDef) {
        let def = TemplateDef {
            name: self.name,
            title: self.title,
            questions: self.questions,
        };
        (self.id, def)
    }
}

/// The body of `template.saved`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedBody {
    pub id: String,
    pub version: u32,
    pub template: TemplateDef,
}

/// The body of `template.deleted`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedBody {
    pub id: String,
}

/// The body of `template.archived`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedBody {
    pub id: String,
    pub archived: bool,
}

fn id_ok(id: &str, max: usize) -> bool {
    (1..=max).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn text_ok(s: &str, max: usize, required: bool) -> Result<(), String> {
    if required && s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > max {
        return Err(format!("at most {max} characters"));
    }
    if !crate::chat::clean_text(s) {
        return Err("contains control characters".into());
    }
    Ok(())
}

fn with_placeholders(s: &str, max: usize, required: bool) -> Result<(), String> {
    text_ok(s, max, required)?;
    placeholders::check(s).map_err(|e| e.to_string())
}

fn check_question(q: &Question, at: &str, errs: &mut FieldErrors) {
    let mut err = |field: &str, why: String| {
        errs.insert(format!("{at}.{field}"), why);
    };
    if !id_ok(&q.id, 32) {
        err("id", "1-32 characters of a-z, 0-9, '_' and '-'".into());
    }
    if let Err(e) = with_placeholders(&q.label, MAX_LABEL, true) {
        err("label", e);
    }
    if let Some(h) = &q.help
        && let Err(e) = with_placeholders(h, MAX_HELP, false)
    {
        err("help", e);
    }
    let Some(kind) = q.field() else {
        err(
            "type",
            "one of text, number, choice, multi_choice, boolean, datetime, file".into(),
        );
        return;
    };
    let not_for = |name: &str| format!("{name} does not apply to a {} question", q.kind);
    let text = kind == FieldType::Text;
    let number = kind == FieldType::Number;
    let choice = matches!(kind, FieldType::Choice | FieldType::MultiChoice);
    let file = kind == FieldType::File;
    for (name, set, allowed) in [
        ("max_length", q.max_length.is_some(), text),
        ("pattern", q.pattern.is_some(), text),
        ("min", q.min.is_some(), number),
        ("max", q.max.is_some(), number),
        ("unit", q.unit.is_some(), number),
        ("decimals", q.decimals.is_some(), number),
        ("options", q.options.is_some(), choice),
        ("allowed_types", q.allowed_types.is_some(), file),
        ("max_bytes", q.max_bytes.is_some(), file),
    ] {
        if set && !allowed {
            err(name, not_for(name));
        }
    }
    if let Some(n) = q.max_length
        && !(1..=MAX_TEXT).contains(&n)
    {
        err("max_length", format!("1-{MAX_TEXT}"));
    }
    if let Some(p) = &q.pattern
        && let Err(e) = Pattern::parse(p)
    {
        err("pattern", e.to_string());
    }
    if q.min.is_some_and(|v| !v.is_finite()) || q.max.is_some_and(|v| !v.is_finite()) {
        err("min", "bounds are finite numbers".into());
    }
    if let (Some(lo), Some(hi)) = (q.min, q.max)
        && lo > hi
    {
        err("max", "max is below min".into());
    }
    if let Some(u) = &q.unit
        && let Err(e) = text_ok(u, MAX_UNIT, true)
    {
        err("unit", e);
    }
    if q.decimals.is_some_and(|d| d > 9) {
        err("decimals", "0-9".into());
    }
    if choice {
        match &q.options {
            None => err("options", "a choice question needs options".into()),
            Some(o) if o.is_empty() || o.len() > MAX_OPTIONS => {
                err("options", format!("1-{MAX_OPTIONS} options"));
            }
            Some(o) => {
                let distinct: BTreeSet<&String> = o.iter().collect();
                if distinct.len() != o.len() {
                    err("options", "options must be distinct".into());
                } else if let Some(e) = o
                    .iter()
                    .find_map(|s| text_ok(s, MAX_OPTION_LEN, true).err())
                {
                    err("options", format!("each option: {e}"));
                }
            }
        }
    }
    if let Some(t) = &q.allowed_types {
        let bad = t.len() > MAX_TYPES
            || t.iter().any(|m| {
                m.len() > 100
                    || m.split_once('/').is_none_or(|(a, b)| {
                        a.is_empty()
                            || b.is_empty()
                            || !m.bytes().all(|c| c.is_ascii_graphic() && c != b',')
                    })
            });
        if bad {
            err(
                "allowed_types",
                format!("at most {MAX_TYPES} media types like image/png or image/*"),
            );
        }
    }
    if q.max_bytes.is_some_and(|b| b == 0 || b > MAX_FILE_BYTES) {
        err("max_bytes", format!("1-{MAX_FILE_BYTES}"));
    }
}

/// Every problem of a definition, keyed `name`, `title`, `questions`, `questions[i].<field>`.
pub fn check(def: &TemplateDef) -> FieldErrors {
    let mut errs = FieldErrors::new();
    if let Err(e) = text_ok(&def.name, MAX_NAME, true) {
        errs.insert("name".into(), e);
    }
    if let Err(e) = with_placeholders(&def.title, MAX_TITLE, true) {
        errs.insert("title".into(), e);
    }
    if def.questions.is_empty() || def.questions.len() > MAX_QUESTIONS {
        errs.insert("questions".into(), format!("1-{MAX_QUESTIONS} questions"));
    }
    let mut seen = BTreeSet::new();
    for (i, q) in def.questions.iter().take(MAX_QUESTIONS).enumerate() {
        let at = format!("questions[{i}]");
        if !seen.insert(q.id.as_str()) {
            errs.insert(format!("{at}.id"), "question ids must be unique".into());
        }
        check_question(q, &at, &mut errs);
    }
    errs
}

fn invalid(fields: FieldErrors) -> IncidentError {
    IncidentError::Fields {
        code: "invalid_template",
        fields,
    }
}

/// A slug of `name`: lower-case ASCII letters and digits, runs of others as one `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(48).collect();
    if out.is_empty() {
        "template".into()
    } else {
        out
    }
}

fn append_saved(
    tx: &mut Tx<'_>,
    by: &Author,
    row: &mut TemplateRow,
    def: &TemplateDef,
) -> Result<u64, AppendError> {
    let version = u32::try_from(row.versions.len() + 1).unwrap_or(u32::MAX);
    let body = SavedBody {
        id: row.id.clone(),
        version,
        template: def.clone(),
    };
    let seq = tx.append(NewEntry::json(KIND_SAVED, &stream_of(&row.id), by, &body)?)?;
    row.versions.push(seq);
    row.name = def.name.clone();
    tx.views().put_template(row)?;
    Ok(seq)
}

/// Creates a template (version 1). Admins only (the caller checks the role).
pub async fn create(log: &Log, by: &Author, t: NewTemplate) -> Result<TemplateRow, IncidentError> {
    let (id, def) = t.split();
    let mut errs = check(&def);
    let id = match id {
        Some(id) => {
            if !id_ok(&id, 48) {
                errs.insert(
                    "id".into(),
                    "1-48 characters of a-z, 0-9, '_' and '-'".into(),
                );
            }
            id
        }
        None => slug(&def.name),
    };
    if !errs.is_empty() {
        return Err(invalid(errs));
    }
    let by = by.clone();
    let count = log.read()?.templates()?.len();
    if count >= MAX_TEMPLATES {
        return Err(SubmitError::Rejected(Rejection::conflict(
            "too_many_templates",
            format!("a site has at most {MAX_TEMPLATES} templates; archive or edit one"),
        ))
        .into());
    }
    Ok(log
        .submit(move |tx| {
            if tx.views().template(&id)?.is_some() {
                return Err(Rejection::conflict(
                    "template_exists",
                    format!("a template with id {id:?} exists; PUT a new version"),
                )
                .into());
            }
            let mut row = TemplateRow {
                id: id.clone(),
                name: def.name.clone(),
                versions: Vec::new(),
                archived: false,
                incidents: 0,
            };
            append_saved(tx, &by, &mut row, &def)?;
            Ok(row)
        })
        .await?)
}

pub(crate) fn no_template() -> Rejection {
    Rejection::not_found("no_such_template", "no template with this id")
}

/// Saves a new version of template `id`; incidents opened before keep theirs.
pub async fn update(
    log: &Log,
    by: &Author,
    id: &str,
    def: TemplateDef,
) -> Result<TemplateRow, IncidentError> {
    let errs = check(&def);
    if !errs.is_empty() {
        return Err(invalid(errs));
    }
    let (by, id) = (by.clone(), id.to_string());
    Ok(log
        .submit(move |tx| {
            let mut row = tx.views().template(&id)?.ok_or_else(no_template)?;
            append_saved(tx, &by, &mut row, &def)?;
            Ok(row)
        })
        .await?)
}

/// Archives (or restores) template `id`: an archived template opens no new incident; those open
/// keep their version. Nothing is ever deleted.
pub async fn set_archived(
    log: &Log,
    by: &Author,
    id: &str,
    archived: bool,
) -> Result<TemplateRow, IncidentError> {
    let (by, id) = (by.clone(), id.to_string());
    Ok(log
        .submit(move |tx| {
            let mut row = tx.views().template(&id)?.ok_or_else(no_template)?;
            if row.archived == archived {
                return Ok(row);
            }
            let body = ArchivedBody {
                id: id.clone(),
                archived,
            };
            tx.append(NewEntry::json(KIND_ARCHIVED, &stream_of(&id), &by, &body)?)?;
            row.archived = archived;
            tx.views().put_template(&row)?;
            Ok(row)
        })
        .await?)
}

/// Deletes template `id` if no incident was ever opened with it (`409 template_in_use`
/// otherwise: archive it instead). Its entries stay in the log; the id may be used again.
pub async fn delete(log: &Log, by: &Author, id: &str) -> Result<(), IncidentError> {
    let (by, id) = (by.clone(), id.to_string());
    Ok(log
        .submit(move |tx| {
            let row = tx.views().template(&id)?.ok_or_else(no_template)?;
            if row.incidents > 0 {
                return Err(Rejection::conflict(
                    "template_in_use",
                    format!(
                        "{} incident(s) were opened with this template; archive it instead",
                        row.incidents
                    ),
                )
                .into());
            }
            let body = DeletedBody { id: id.clone() };
            tx.append(NewEntry::json(KIND_DELETED, &stream_of(&id), &by, &body)?)?;
            tx.views().remove_template(&id)?;
            Ok(())
        })
        .await?)
}

/// One version of a template as read from its entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Version {
    pub version: u32,
    pub seq: u64,
    pub ts_us: i64,
    pub author: String,
    #[serde(flatten)]
    pub template: TemplateDef,
}

/// Reads version `version` (1-based) of `row` from its `template.saved` entry.
pub fn version(
    log: &Log,
    rtx: &ReadTx,
    row: &TemplateRow,
    version: u32,
) -> Result<Option<Version>, IncidentError> {
    let Some(&seq) = row.versions.get((version as usize).wrapping_sub(1)) else {
        return Ok(None);
    };
    let Some(e) = log.entry_of_kind(rtx, seq, KIND_SAVED)? else {
        return Ok(None);
    };
    let body: SavedBody = serde_json::from_slice(&e.body).map_err(IncidentError::Body)?;
    Ok(Some(Version {
        version,
        seq,
        ts_us: e.ts,
        author: e.author,
        template: body.template,
    }))
}

/// A template in a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub archived: bool,
    pub incidents: u64,
}

impl From<&TemplateRow> for Summary {
    fn from(r: &TemplateRow) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            version: u32::try_from(r.versions.len()).unwrap_or(u32::MAX),
            archived: r.archived,
            incidents: r.incidents,
        }
    }
}

/// Every template (archived ones only when asked).
pub fn list(log: &Log, archived: bool) -> Result<Vec<Summary>, IncidentError> {
    let rtx = log.read()?;
    Ok(rtx
        .templates()?
        .iter()
        .filter(|t| archived || !t.archived)
        .map(Summary::from)
        .collect())
}

/// A template with its current definition and every version's seq.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Detail {
    #[serde(flatten)]
    pub summary: Summary,
    pub current: Version,
    /// The seq of each version's entry, version 1 first.
    pub versions: Vec<u64>,
}

pub fn get(log: &Log, id: &str) -> Result<Detail, IncidentError> {
    let rtx = log.read()?;
    let row = rtx.template(id)?.ok_or_else(no_template)?;
    let n = u32::try_from(row.versions.len()).unwrap_or(u32::MAX);
    let current = version(log, &rtx, &row, n)?.ok_or_else(no_template)?;
    Ok(Detail {
        summary: Summary::from(&row),
        current,
        versions: row.versions,
    })
}

/// A template filled from a sample context, for the builder's live preview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Filled {
    pub title: String,
    pub questions: Vec<FilledQuestion>,
}

/// A question with its label and help filled.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FilledQuestion {
    #[serde(flatten)]
    pub question: Question,
    pub label_filled: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_filled: Option<String>,
}

/// Fills the title, labels and help of `def` from `ctx`.
pub fn fill(def: &TemplateDef, ctx: &placeholders::Context) -> Filled {
    Filled {
        title: placeholders::fill(&def.title, ctx),
        questions: def
            .questions
            .iter()
            .map(|q| FilledQuestion {
                label_filled: placeholders::fill(&q.label, ctx),
                help_filled: q.help.as_ref().map(|h| placeholders::fill(h, ctx)),
                question: q.clone(),
            })
            .collect(),
    }
}

/// Checks a definition and fills it from `ctx` (the builder's preview); nothing is stored.
pub fn preview(def: &TemplateDef, ctx: &placeholders::Context) -> Result<Filled, IncidentError> {
    let errs = check(def);
    if errs.is_empty() {
        Ok(fill(def, ctx))
    } else {
        Err(invalid(errs))
    }
}

/// The ids of a definition's questions.
pub fn question_ids(def: &TemplateDef) -> BTreeMap<&str, &Question> {
    def.questions.iter().map(|q| (q.id.as_str(), q)).collect()
}

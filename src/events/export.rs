//! Event export rows: CSV (RFC 4180, cells guarded against spreadsheet formulas) and JSON Lines,
//! written one event at a time so an export never holds more than a page.

use super::StoredEvent;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// `csv`, or `jsonl` (also `ndjson`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    /// What goes before the first row: the CSV header line, nothing for JSON Lines.
    pub fn header(self) -> &'static [u8] {
        match self {
            Self::Csv => {
                b"seq,ts,ts_us,by,source,type,severity,message,attributes,occurred_at_us,condition,state\r\n"
            }
            Self::Jsonl => b"",
        }
    }

    /// Appends one event as a row.
    pub fn write_row(self, e: &StoredEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Self::Jsonl => {
                serde_json::to_writer(&mut *out, e)?;
                out.push(b'\n');
            }
            Self::Csv => {
                let ev = &e.body.event;
                let severity = serde_json::to_value(ev.severity)?;
                let attributes = serde_json::to_string(&ev.attributes)?;
                let ts = crate::clock::rfc3339_us(e.ts_us);
                let occurred = ev.occurred_at_us.map(|t| t.to_string()).unwrap_or_default();
                let condition = ev.condition.as_deref().map(text_cell).unwrap_or_default();
                let state = match ev.state {
                    Some(st) => serde_json::to_value(st)?,
                    None => serde_json::Value::Null,
                };
                let cells = [
                    e.seq.to_string().as_str(),
                    ts.as_str(),
                    e.ts_us.to_string().as_str(),
                    text_cell(&e.body.by).as_str(),
                    text_cell(&ev.source).as_str(),
                    text_cell(&ev.event_type).as_str(),
                    severity.as_str().unwrap_or_default(),
                    text_cell(&ev.message).as_str(),
                    text_cell(&attributes).as_str(),
                    occurred.as_str(),
                    condition.as_str(),
                    state.as_str().unwrap_or_default(),
                ]
                .map(csv_field);
                out.extend_from_slice(cells.join(",").as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }
}

/// A cell of text someone else wrote: one starting with `=`, `+`, `-` or `@` (or a tab or CR,
/// which some spreadsheets skip first) would be read as a formula, so it gets a leading `'`.
pub fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// RFC 4180: a field with a comma, a quote, CR or LF is quoted, its quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{csv_field, text_cell};

    #[test]
    fn csv_cells_are_quoted_and_guarded() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(text_cell("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(text_cell("+1"), "'+1");
        assert_eq!(text_cell("-1"), "'-1");
        assert_eq!(text_cell("@cmd"), "'@cmd");
        assert_eq!(text_cell("pump-7"), "pump-7");
    }
}

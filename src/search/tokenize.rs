//! Words of a text for the blind index: lower-cased, split on anything that is not a letter or
//! digit (Unicode-aware), bounded in length, plus the keyed prefixes that make prefix search work.

/// Tokens shorter than this (in characters) are neither indexed nor searched.
pub const MIN_TOKEN: usize = 2;
/// Longer tokens are cut to this many characters, when indexed and when searched alike.
pub const MAX_TOKEN: usize = 32;
/// The prefix lengths indexed for every token longer than that. A prefix query of `n`
/// characters reads the list of the longest indexed length `<= n` and checks the rest on the
/// opened text.
pub const PREFIX_LENS: [usize; 2] = [3, 6];
/// The shortest prefix a query may ask for.
pub const MIN_PREFIX: usize = PREFIX_LENS[0];

/// The words of `text`, lower-cased and bounded, in order (duplicates kept).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower: String = w.chars().flat_map(char::to_lowercase).collect();
            lower.chars().take(MAX_TOKEN).collect::<String>()
        })
        .filter(|w| w.chars().count() >= MIN_TOKEN)
}

/// The index key of a whole word.
pub fn word_key(word: &str) -> Vec<u8> {
    let mut k = b"w\0".to_vec();
    k.extend_from_slice(word.as_bytes());
    k
}

/// The index key of a prefix of exactly one of the [`PREFIX_LENS`] characters.
pub fn prefix_key(prefix: &str) -> Vec<u8> {
    let mut k = b"p\0".to_vec();
    k.extend_from_slice(prefix.as_bytes());
    k
}

/// Keys of a JSON body whose string values are never text to search: ids, idempotency keys,
/// usernames and the body's type tag.
const SKIP: &[&str] = &[
    "type",
    "conv",
    "key",
    "mentions",
    "attachments",
    "by",
    "target",
    "reply_to",
    "event_id",
    "incident",
];

/// Whether `body_strings` leaves out the value under this object key.
pub fn skipped(key: &str) -> bool {
    SKIP.contains(&key)
}

/// Every string value of a JSON body (nested objects and arrays included) except under
/// [`SKIP`] keys: message text, event messages and attributes, alarm texts, and any structured
/// message body, generically.
pub fn body_strings(body: &serde_json::Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect(body, &mut out);
    out
}

fn collect<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if !skipped(k) {
                    collect(v, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_unicode_and_bounded() {
        let w: Vec<String> = words("Pumpe-7 DRUCK hoch: Überdruck! a x1 Ωmega").collect();
        assert_eq!(w, ["pumpe", "druck", "hoch", "überdruck", "x1", "ωmega"]);
        let long = "a".repeat(100);
        assert_eq!(words(&long).next().map(|w| w.len()), Some(MAX_TOKEN));
    }

    #[test]
    fn body_strings_walk_structured_bodies_but_skip_ids() {
        let body = serde_json::json!({
            "type": "message", "conv": "c1", "key": "k1", "text": "hello",
            "answers": {"cause": "worn seal", "steps": ["replaced gasket", 3]},
        });
        let mut s = body_strings(&body);
        s.sort_unstable();
        assert_eq!(s, ["hello", "replaced gasket", "worn seal"]);
    }
}

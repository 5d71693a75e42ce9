//! The index keys of an entry's JSON body in one pass over its bytes: the strings
//! `tokenize::body_strings` picks, cut into words and keyed as `tokenize` defines, with no `Value`
//! tree and no string per word. It must give exactly the keys of the `Value` path (the postings
//! already written depend on it); the tests below keep that path as the reference.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::tokenize::{self, MAX_TOKEN, MIN_TOKEN, PREFIX_LENS};

/// Object keys serde_json reads as a marker, not as a key (raw values; numbers with
/// `arbitrary_precision`): such a body is left to the `Value` path, which knows their meaning.
const SERDE_JSON_MARKER: &str = "$serde_json::private::";

/// The distinct index keys of one body, in byte order (the order of a `BTreeSet<Vec<u8>>`).
/// The buffers are kept between bodies, so a batch allocates them once.
#[derive(Debug, Default)]
pub struct BodyKeys {
    /// Every key found, back to back: `w\0word`, `p\0prefix`.
    arena: Vec<u8>,
    /// Where each key lies in `arena`; sorted and deduplicated once the body is read.
    spans: Vec<(usize, usize)>,
    /// A hash of each key of the objects being walked (one run per open object): a key seen
    /// twice in one object sends the body to the `Value` path, where the last value wins.
    object_keys: Vec<u64>,
    /// The body needs the `Value` path (a repeated key, a serde_json marker key).
    fallback: bool,
}

impl BodyKeys {
    /// Reads `body`: afterwards [`BodyKeys::iter`] gives its keys (none if it is not JSON).
    pub fn read(&mut self, body: &[u8]) {
        self.clear();
        let mut de = serde_json::Deserializer::from_slice(body);
        let walked = Walk {
            keys: self,
            collect: true,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if self.fallback {
            // Rare (plantwire serializes its bodies from structs, which repeat no key): read it
            // the way the reference does.
            self.clear();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                for s in tokenize::body_strings(&v) {
                    self.text(s);
                }
            }
        } else if walked.is_err() {
            self.clear();
        }
        let arena = &self.arena;
        self.spans
            .sort_unstable_by(|a, b| arena[a.0..a.1].cmp(&arena[b.0..b.1]));
        self.spans
            .dedup_by(|a, b| arena[a.0..a.1] == arena[b.0..b.1]);
    }

    /// The keys of the body last read, each once, in byte order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|&(a, b)| &self.arena[a..b])
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.object_keys.clear();
        self.fallback = false;
    }

    /// Adds the keys of one text: what `tokenize::words` gives, each word's key and the keys
    /// of its indexed prefixes.
    fn text(&mut self, text: &str) {
        let mut start = None;
        for (i, c) in text.char_indices() {
            if c.is_alphanumeric() {
                start.get_or_insert(i);
            } else if let Some(s) = start.take() {
                self.word(&text[s..i]);
            }
        }
        if let Some(s) = start {
            self.word(&text[s..]);
        }
    }

    /// One word as `tokenize::words` makes it (lower-cased, then cut to [`MAX_TOKEN`]
    /// characters, dropped under [`MIN_TOKEN`]), written straight into the arena.
    fn word(&mut self, word: &str) {
        let start = self.arena.len();
        self.arena.extend_from_slice(b"w\0");
        let mut n = 0;
        // The arena offset where each prefix of PREFIX_LENS characters ends.
        let mut cut = [0; PREFIX_LENS.len()];
        let mut push = |lc: char| {
            if n == MAX_TOKEN {
                return false;
            }
            let mut utf8 = [0; 4];
            self.arena
                .extend_from_slice(lc.encode_utf8(&mut utf8).as_bytes());
            n += 1;
            for (end, len) in cut.iter_mut().zip(PREFIX_LENS) {
                if n == len {
                    *end = self.arena.len();
                }
            }
            true
        };
        for c in word.chars() {
            let room = if c.is_ascii() {
                push(c.to_ascii_lowercase())
            } else {
                c.to_lowercase().all(&mut push)
            };
            if !room {
                break;
            }
        }
        if n < MIN_TOKEN {
            self.arena.truncate(start);
            return;
        }
        self.spans.push((start, self.arena.len()));
        // A word exactly as long as a prefix length is its own prefix: the word key serves (a
        // prefix query of that length reads both lists).
        for (end, len) in cut.into_iter().zip(PREFIX_LENS) {
            if n > len {
                let p = self.arena.len();
                self.arena.extend_from_slice(b"p\0");
                self.arena.extend_from_within(start + 2..end);
                self.spans.push((p, self.arena.len()));
            }
        }
    }
}

/// One JSON value: its strings become keys when `collect` (not under a skipped object key).
/// Skipped values are still read with `deserialize_any`, so a body parses here exactly when it
/// parses as a `Value`.
struct Walk<'k> {
    keys: &'k mut BodyKeys,
    collect: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        if self.collect {
            self.keys.text(s);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let collect = self.collect;
        while seq
            .next_element_seed(Walk {
                keys: &mut *self.keys,
                collect,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let first = self.keys.object_keys.len();
        while let Some(key) = map.next_key_seed(KeyName)? {
            self.keys.fallback |= key.marker;
            self.keys.object_keys.push(key.hash);
            map.next_value_seed(Walk {
                keys: &mut *self.keys,
                collect: self.collect && !key.skip,
            })?;
        }
        // Nested objects have truncated theirs by now: the run is this object's keys.
        let own = &mut self.keys.object_keys[first..];
        own.sort_unstable();
        self.keys.fallback |= own.windows(2).any(|w| w[0] == w[1]);
        self.keys.object_keys.truncate(first);
        Ok(())
    }
}

/// What the walk needs of an object key, read without keeping it.
struct Key {
    /// `tokenize::body_strings` skips the value.
    skip: bool,
    /// For spotting a repeated key; a collision only costs the `Value` path.
    hash: u64,
    marker: bool,
}

struct KeyName;

impl<'de> DeserializeSeed<'de> for KeyName {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        // As serde_json's `Value` reads a key.
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, s: &str) -> Result<Key, E> {
        // FNV-1a: keys are short and this runs per key; no need for a keyed hash here.
        let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Ok(Key {
            skip: tokenize::skipped(s),
            hash,
            marker: s.starts_with(SERDE_JSON_MARKER),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::search::tokenize::{body_strings, prefix_key, word_key, words};

    /// The keys as the indexer made them before this module: a `Value` tree, its strings, and
    /// a set of owned keys (kept here as the reference the walk must match).
    pub(crate) fn reference(body: &[u8]) -> BTreeSet<Vec<u8>> {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return BTreeSet::new();
        };
        let mut out = BTreeSet::new();
        for w in body_strings(&v).into_iter().flat_map(words) {
            let chars: Vec<char> = w.chars().collect();
            for n in PREFIX_LENS {
                if chars.len() > n {
                    out.insert(prefix_key(&chars[..n].iter().collect::<String>()));
                }
            }
            out.insert(word_key(&w));
        }
        out
    }

    fn walked(keys: &mut BodyKeys, body: &[u8]) -> Vec<Vec<u8>> {
        keys.read(body);
        keys.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn keys_hold_words_and_prefixes_once() {
        let mut keys = BodyKeys::default();
        let k = walked(&mut keys, br#"["pressure pressure", "pump", "bar filter"]"#);
        assert!(k.contains(&word_key("pressure")));
        assert!(k.contains(&prefix_key("pre")));
        assert!(k.contains(&prefix_key("pressu")));
        assert!(k.contains(&prefix_key("pum")));
        assert!(!k.contains(&prefix_key("pump")));
        // Words exactly 3 or 6 long are not indexed again as their own prefix.
        assert!(k.contains(&word_key("bar")) && !k.contains(&prefix_key("bar")));
        assert!(k.contains(&prefix_key("fil")) && !k.contains(&prefix_key("filter")));
        assert_eq!(k.len(), 8);
    }

    #[test]
    fn the_walk_gives_the_keys_of_the_value_path() {
        let long = format!("{} {}", "Ab".repeat(40), "ÄÖÜẞ".repeat(20));
        let bodies: Vec<Vec<u8>> = [
            // chat.message, chat.edited
            r#"{"type":"message","conv":"c1","key":"k-9f","text":"Pumpe 7 DRUCK hoch, bitte prüfen!","mentions":["alice"],"attachments":[{"id":"a1","name":"photo of pump"}],"reply_to":42}"#,
            r#"{"type":"edited","conv":"c1","target":17,"text":"Valve V-12 leaks again"}"#,
            // event, with attributes of every JSON type
            r#"{"source":"plc-3","severity":"warning","message":"Overpressure at pump P-101","attributes":{"line":"L2","bar":7.25,"ok":false,"none":null,"count":-3,"big":18446744073709551615,"tags":["hot","vibration",["nested deeper"]]},"event_id":"e-77","key":"idem-1"}"#,
            // alarm.*, incident answered
            r#"{"state":"raised","text":"Kiln temperature high","by":"system","incident":"inc-4"}"#,
            r#"{"incident":"inc-4","answers":{"cause":"worn seal","steps":["replaced gasket",3],"by":"bob"}}"#,
            // unicode, escapes, surrogate pairs, case folding that changes length
            r#"{"text":"\u00dcberdruck \"quoted\" tab\there \ud83d\ude00 emoji İstanbul ΩMEGA σς straße ǅemal"}"#,
            r#"{"text":"caf\u00e9 na\u00efve \\ back\/slash \n newline x1 a b"}"#,
            // a top-level string, array, scalars, empty containers
            r#""just a string at the top""#,
            r#"["one", {"two":"three four"}, [["five six"]], 7, true, null]"#,
            r#"{}"#,
            r#"[]"#,
            r#"42"#,
            r#"null"#,
            // skipped keys at any depth, keys never indexed themselves
            r#"{"outer":{"type":"hidden","conv":"hidden too","inner":{"by":"nobody","words":"shown here"}},"visible_key_name":1}"#,
            // repeated keys: the last value wins in a Value
            r#"{"text":"first value","text":"second value"}"#,
            r#"{"a":{"text":"early"},"a":{"text":"late"},"b":["kept"]}"#,
            r#"{"type":"skipped","type":"still skipped","text":"shown"}"#,
            // serde_json's raw-value marker as the first key, valid and not
            r#"{"$serde_json::private::RawValue":"\"parsed again as json\""}"#,
            r#"{"$serde_json::private::RawValue":"not json"}"#,
            r#"{"text":"before","$serde_json::private::RawValue":"after"}"#,
            // not JSON, or JSON followed by more
            "",
            "   ",
            "plain text body",
            r#"{"text":"unterminated"#,
            r#"{"text":"ok"} trailing"#,
            r#"{"text":"ok"}   "#,
            r#"{"text":"lone surrogate \ud800 here"}"#,
            r#"{"type":"lone surrogate \ud800 in a skipped value"}"#,
            r#"{"n":1e999,"text":"number out of range"}"#,
            r#"{"text":"bad escape \x"}"#,
            "{\"text\":\"raw control \u{1} char\"}",
        ]
        .into_iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([
            format!(r#"{{"text":"{long}"}}"#).into_bytes(),
            format!(r#"{{"text":"{}"}}"#, "word ".repeat(5_000)).into_bytes(),
            format!("{}\"deep\"{}", "[".repeat(127), "]".repeat(127)).into_bytes(),
            format!("{}\"too deep\"{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
            b"{\"text\":\"not utf-8 \xff\xfe\"}".to_vec(),
        ])
        .collect();
        // One BodyKeys for all, as in a batch: nothing of one body may leak into the next.
        let mut keys = BodyKeys::default();
        let mut nonempty = 0;
        for body in &bodies {
            let want: Vec<Vec<u8>> = reference(body).into_iter().collect();
            nonempty += usize::from(!want.is_empty());
            assert_eq!(
                walked(&mut keys, body),
                want,
                "body {}",
                String::from_utf8_lossy(body)
            );
        }
        // The set exercises both outcomes.
        assert!(nonempty > 15 && nonempty < bodies.len(), "{nonempty}");
    }
}

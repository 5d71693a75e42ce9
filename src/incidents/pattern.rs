//! The pattern language of text questions: a bounded subset of regular expressions, matched
//! against the whole answer in time linear in (pattern × answer × repeat bound), never backtracking.
//!
//! Atoms: a literal character, `\` before any of `\ . [ ] { } ( ) ? * + ^ $ |`, `.` (any
//! character), `\d` (ASCII digit), `\w` (ASCII letter, digit or `_`), `\s` (white space), and a
//! class `[...]` of characters and ranges (`[A-Z0-9_-]`, `[^,]`). Each atom may be followed by
//! `?`, `*`, `+`, `{n}`, `{n,}` or `{n,m}` (n, m ≤ 1000). No groups, no alternation.

/// Longest pattern, in characters.
pub const MAX_PATTERN: usize = 200;
/// Largest repeat count in `{n,m}`.
const MAX_REPEAT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is longer than {MAX_PATTERN} characters")]
    TooLong,
    #[error("{0}")]
    Syntax(&'static str),
}

#[derive(Debug, Clone)]
enum Atom {
    Any,
    Char(char),
    Digit,
    Word,
    Space,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Any => true,
            Atom::Char(x) => *x == c,
            Atom::Digit => c.is_ascii_digit(),
            Atom::Word => c.is_ascii_alphanumeric() || c == '_',
            Atom::Space => c.is_whitespace(),
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    items: Vec<(Atom, usize, Option<usize>)>,
}

const META: &str = "\\.[]{}()?*+^$|";

fn escaped(c: char) -> Result<Atom, PatternError> {
    match c {
        'd' => Ok(Atom::Digit),
        'w' => Ok(Atom::Word),
        's' => Ok(Atom::Space),
        c if META.contains(c) || c == '-' || c == '/' => Ok(Atom::Char(c)),
        _ => Err(PatternError::Syntax(
            "unknown escape; use \\d, \\w, \\s or escape a symbol",
        )),
    }
}

fn number(chars: &[char], i: &mut usize) -> Option<usize> {
    let start = *i;
    while *i < chars.len() && chars[*i].is_ascii_digit() {
        *i += 1;
    }
    if *i == start || *i - start > 4 {
        return None;
    }
    chars[start..*i].iter().collect::<String>().parse().ok()
}

impl Pattern {
    pub fn parse(src: &str) -> Result<Self, PatternError> {
        let chars: Vec<char> = src.chars().collect();
        if chars.len() > MAX_PATTERN {
            return Err(PatternError::TooLong);
        }
        let bad = PatternError::Syntax;
        let mut items = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let atom = match chars[i] {
                '.' => Atom::Any,
                '\\' => {
                    i += 1;
                    escaped(*chars.get(i).ok_or(bad("a pattern cannot end with \\"))?)?
                }
                '[' => {
                    i += 1;
                    let negated = chars.get(i) == Some(&'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        let c = match chars.get(i) {
                            None => return Err(bad("a '[' class is not closed")),
                            Some(']') if !ranges.is_empty() => break,
                            Some('\\') => {
                                i += 1;
                                *chars.get(i).ok_or(bad("a pattern cannot end with \\"))?
                            }
                            Some(&c) => c,
                        };
                        if chars.get(i + 1) == Some(&'-')
                            && chars.get(i + 2).is_some_and(|&e| e != ']')
                        {
                            let hi = chars[i + 2];
                            if hi < c {
                                return Err(bad("a class range runs backwards"));
                            }
                            ranges.push((c, hi));
                            i += 3;
                        } else {
                            ranges.push((c, c));
                            i += 1;
                        }
                    }
                    Atom::Class { negated, ranges }
                }
                '(' | ')' | '|' | '^' | '$' => {
                    return Err(bad("groups, alternation and anchors are not supported"));
                }
                '?' | '*' | '+' | '{' | '}' | ']' => {
                    return Err(bad("a repeat or bracket has nothing before it"));
                }
                c => Atom::Char(c),
            };
            i += 1;
            let (min, max) = match chars.get(i) {
                Some('?') => (0, Some(1)),
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('{') => {
                    i += 1;
                    let lo = number(&chars, &mut i).ok_or(bad("{n,m} needs numbers"))?;
                    let hi = if chars.get(i) == Some(&',') {
                        i += 1;
                        if chars.get(i) == Some(&'}') {
                            None
                        } else {
                            Some(number(&chars, &mut i).ok_or(bad("{n,m} needs numbers"))?)
                        }
                    } else {
                        Some(lo)
                    };
                    if chars.get(i) != Some(&'}') {
                        return Err(bad("a '{' repeat is not closed"));
                    }
                    if lo > MAX_REPEAT || hi.is_some_and(|h| h > MAX_REPEAT || h < lo) {
                        return Err(bad("repeat counts are 0-1000 and n <= m"));
                    }
                    (lo, hi)
                }
                _ => {
                    items.push((atom, 1, Some(1)));
                    continue;
                }
            };
            i += 1;
            items.push((atom, min, max));
        }
        Ok(Self { items })
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        // reach[p]: the items so far can end exactly at position p.
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for (atom, min, max) in &self.items {
            let mut next = vec![false; n + 1];
            for (start, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
                let mut count = 0;
                let mut p = start;
                loop {
                    if count >= *min {
                        next[p] = true;
                    }
                    if max.is_some_and(|m| count >= m) || p >= n || !atom.matches(chars[p]) {
                        break;
                    }
                    count += 1;
                    p += 1;
                }
            }
            reach = next;
        }
        reach[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).map(|p| p.is_match(t)).unwrap_or(false)
    }

    #[test]
    fn matches_the_whole_value() {
        assert!(m("WO-\\d{4,6}", "WO-12345"));
        assert!(!m("WO-\\d{4,6}", "WO-123"));
        assert!(!m("WO-\\d{4,6}", "xWO-12345"));
        assert!(m("[A-Z][a-z]*", "Pump"));
        assert!(!m("[A-Z][a-z]*", "pump"));
        assert!(m("[^,]+", "no commas"));
        assert!(!m("[^,]+", "a,b"));
        assert!(m("a.?b", "ab") && m("a.?b", "axb") && !m("a.?b", "axxb"));
        assert!(m("\\w+\\s\\w+", "hello world"));
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for p in ["(a|b)", "a{2", "[abc", "*a", "\\q", "a{5,2}", "^a$"] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
        assert!(Pattern::parse(&"a".repeat(201)).is_err());
    }
}

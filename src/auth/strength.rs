//! A password strength estimate that needs no dictionary engine (a regex-based estimator would
//! add 2.5 MB to a binary that must stay under 10 MB): the guessable parts of a password (common
//! passwords, the user's own name, keyboard and alphabet runs, repeats, years) count for little,
//! and what is left must carry enough entropy.

/// The least estimated entropy accepted, in bits: about 10^10 guesses, what zxcvbn calls
/// "safely unguessable" (score 3).
pub const MIN_BITS: f64 = 33.0;

/// Keyboard rows and the alphabets in which a run is a walk, not a choice.
const RUNS: &[&str] = &[
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "01234567890",
    "qwertzuiop",
    "azertyuiop",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "zaq1xsw2cde3vfr4bgt5nhy6mju7",
];

/// Bits a common password (one of `common`, ranked about 1,000 deep) or a context word is worth.
const KNOWN_WORD_BITS: f64 = 10.0;
/// Bits per letter of a word the estimate does not know: about what English text carries.
const LETTER_BITS: f64 = 2.5;
/// Bits per digit of a number that is no run, repeat or year.
const DIGIT_BITS: f64 = 3.32;

/// The estimated entropy of `password`, in bits. `common` are known passwords (lower case, one a
/// line); `context` are words the person is likely to use (the username, the product name).
pub fn estimate_bits(password: &str, common: &str, context: &[&str]) -> f64 {
    let lower = password.to_lowercase();
    // The whole password as a repetition ("abc123abc123", "Pass1!Pass1!") is its unit.
    if let Some(unit) = repeated_unit(&lower) {
        let times = lower.chars().count() / unit.chars().count();
        return estimate_bits(unit, common, context) + (times as f64).log2();
    }
    // The whole password as a walk, doubled characters folded ("1qaz2wsx", "1122334455").
    if is_run(&lower) || is_run(&undouble(&lower)) {
        return 4.0 + (lower.chars().count() as f64).log2();
    }
    // The weaker of two readings: as typed, and with digit-for-letter swaps undone
    // (`p4ssw0rd` is `password`).
    tokens_bits(&lower, common, context).min(tokens_bits(&unleet(&lower), common, context))
}

fn tokens_bits(lower: &str, common: &str, context: &[&str]) -> f64 {
    let mut bits = 0.0;
    let mut previous: Option<String> = None;
    let mut separators = 0usize;
    for token in tokens(lower) {
        if token.chars().all(|c| !c.is_alphanumeric()) {
            // A run of one symbol ("!!!!!!") is one choice and a length.
            separators += 1;
            bits += (token.chars().count() as f64).log2();
            continue;
        }
        // The same token again adds almost nothing ("bob bob bob").
        if previous.as_deref() == Some(token.as_str()) {
            bits += 1.0;
            continue;
        }
        bits += token_bits(&token, common, context);
        previous = Some(token);
    }
    // Where the separators go is a little choice; which ones, a little more.
    bits + separators as f64 * 1.5
}

/// Whether `password` is too easy to guess.
pub fn guessable(password: &str, common: &str, context: &[&str]) -> bool {
    estimate_bits(password, common, context) < MIN_BITS
}

/// The string with each run of one character folded to one ("1122334455" → "12345").
fn undouble(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = None;
    for c in s.chars() {
        if last != Some(c) {
            out.push(c);
        }
        last = Some(c);
    }
    out
}

/// Splits into runs of letters, runs of digits and runs of one other character.
fn tokens(s: &str) -> Vec<String> {
    let class = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_numeric() {
            1
        } else {
            2
        }
    };
    let mut out: Vec<String> = Vec::new();
    let mut last = None;
    for c in s.chars() {
        let k = class(c);
        match out.last_mut() {
            Some(t) if last == Some(k) && (k != 2 || t.ends_with(c)) => t.push(c),
            _ => out.push(c.to_string()),
        }
        last = Some(k);
    }
    out
}

fn token_bits(token: &str, common: &str, context: &[&str]) -> f64 {
    let n = token.chars().count();
    // A repetition of a shorter unit ("bobbobbob", "1111", "abab") is the unit and a count.
    if let Some(unit) = repeated_unit(token) {
        let times = n / unit.chars().count();
        return token_bits(unit, common, context) + (times as f64).log2();
    }
    if is_run(token) {
        return 4.0 + (n as f64).log2();
    }
    let known = |w: &str| {
        w.chars().count() >= 3
            && (common.lines().any(|c| c == w) || context.iter().any(|c| c.eq_ignore_ascii_case(w)))
    };
    if token.chars().all(char::is_numeric) {
        let is_year = n == 4 && (token.starts_with("19") || token.starts_with("20"));
        return if is_year { 7.0 } else { n as f64 * DIGIT_BITS };
    }
    let plain = unleet(token);
    if known(token) || known(&plain) {
        return KNOWN_WORD_BITS;
    }
    // A known word with letters tacked on ("passwordx") is that word and a little more.
    if let Some(w) = (3..n)
        .rev()
        .find(|&k| known(&plain.chars().take(k).collect::<String>()))
    {
        return KNOWN_WORD_BITS + (n - w) as f64 * LETTER_BITS;
    }
    n as f64 * LETTER_BITS
}

/// The shortest unit the token is made of, when it repeats at least twice.
fn repeated_unit(token: &str) -> Option<&str> {
    let n = token.len();
    (1..=n / 2)
        .filter(|k| n % k == 0 && token.is_char_boundary(*k))
        .map(|k| &token[..k])
        .find(|unit| unit.repeat(n / unit.len()) == token)
}

/// Whether the token walks along a keyboard row or the alphabet (forwards or backwards).
fn is_run(token: &str) -> bool {
    if token.chars().count() < 3 {
        return false;
    }
    let reversed: String = token.chars().rev().collect();
    RUNS.iter()
        .any(|r| r.contains(token) || r.contains(reversed.as_str()))
}

/// Undoes the usual letter-for-digit swaps (`p4ssw0rd` → `password`).
fn unleet(token: &str) -> String {
    token
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '@' => 'a',
            '$' => 's',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{estimate_bits, guessable};

    const COMMON: &str = include_str!("common-passwords.txt");

    #[test]
    fn guessable_shapes_are_refused_and_phrases_pass() {
        for weak in [
            "password1234",
            "bobbobbob2024",
            "qwerty123456",
            "p4ssw0rd2023",
            "abcdefghijk",
            "1111111111111",
            "bob bob bob bob",
            "plantwire2024",
            "!!!!!!!!!!!!!!!!!!!!!!",
            "password!!!!!!!!!!!!!!!!",
            "abc123abc123abc123",
            "password1password1password1",
            "Password123!Password123!",
            "passw0rd!passw0rd!",
            "1qaz2wsx3edc4rfv",
            "1122334455",
        ] {
            assert!(
                guessable(weak, COMMON, &["bob", "plantwire"]),
                "{weak}: {}",
                estimate_bits(weak, COMMON, &["bob", "plantwire"])
            );
        }
        for strong in [
            "pump room 4 smells of oil",
            "valve 7 is sticky again",
            "correct horse battery",
            "kT9fQ2xLm8Rw4pZs6hJd",
        ] {
            assert!(
                !guessable(strong, COMMON, &["bob"]),
                "{strong}: {}",
                estimate_bits(strong, COMMON, &["bob"])
            );
        }
    }
}

//! Names people read (attachment names, display names, conversation names): what is removed so
//! a name renders as the characters it holds. Pure functions; no storage, no I/O.

/// Unicode general category Cf (format characters), Unicode 15.1, except U+200C ZERO WIDTH
/// NON-JOINER and U+200D ZERO WIDTH JOINER: Persian and Indic spelling and emoji sequences need
/// them, and they cannot reorder text. Inclusive ranges, sorted.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200B),
    (0x200E, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character that `strip_format` removes: bidi embeddings, overrides
/// and isolates (U+202A-202E, U+2066-2069), marks (U+200E/F, U+061C), invisible operators, tags.
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `name` without format characters, so `x\u{202E}gnp.exe` is stored as `xgnp.exe` and never
/// shows as `xexe.png`. Every name people read goes through this before it is checked and stored.
pub fn strip_format(name: &str) -> String {
    name.chars().filter(|&c| !is_format(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_marks_go_joiners_stay() {
        assert_eq!(strip_format("x\u{202E}gnp.exe"), "xgnp.exe");
        for c in [
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{FEFF}',
            '\u{E0041}',
        ] {
            assert!(is_format(c), "{c:?}");
        }
        assert_eq!(strip_format("a\u{200D}b\u{200C}c"), "a\u{200D}b\u{200C}c");
        assert_eq!(strip_format("Grüße 東京 مرحبا"), "Grüße 東京 مرحبا");
    }

    #[test]
    fn table_is_sorted_and_disjoint() {
        assert!(FORMAT.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(FORMAT.iter().all(|(lo, hi)| lo <= hi));
    }
}

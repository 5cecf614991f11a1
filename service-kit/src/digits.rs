//! Digit normalisation shared by every field a citizen types.
//!
//! Iranian keyboards produce Persian (U+06F0..) or Arabic-Indic (U+0660..) digits; people
//! also type spaces, dashes and slashes between groups. Every parser in `domain` starts by
//! folding the input through [`to_latin_digits`] so a handler never has to care.

/// Replaces Persian and Arabic-Indic digits with ASCII digits and leaves everything else.
pub fn to_latin_digits(input: &str) -> String {
    input
        .chars()
        .map(|c| match c {
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            other => other,
        })
        .collect()
}

/// Keeps only ASCII digits after folding, dropping separators people type for readability.
pub fn digits_only(input: &str) -> String {
    to_latin_digits(input)
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{200c}' | '\u{00a0}'))
        .collect()
}

/// Renders ASCII digits as Persian digits, for pages shown in Persian.
pub fn to_persian_digits(input: &str) -> String {
    input
        .chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0x06F0 + (c as u32 - '0' as u32)).unwrap_or(c),
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persian_and_arabic_digits_become_latin() {
        assert_eq!(to_latin_digits("۰۹۱۲"), "0912");
        assert_eq!(to_latin_digits("٠٩١٢"), "0912");
        assert_eq!(digits_only("۰۹۱۲ ۳۴۵-۶۷۸۹"), "09123456789");
    }

    #[test]
    fn latin_digits_render_in_persian() {
        assert_eq!(to_persian_digits("1403/01/02"), "۱۴۰۳/۰۱/۰۲");
    }
}

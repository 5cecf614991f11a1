//! The Iranian national ID's rule (کد ملی): ten digits, the last a mod-11 check digit of
//! the first nine, and never ten equal digits (they pass the arithmetic but are never
//! issued). One rule for both services: the IdP checks what citizens type, presale what
//! the IdP released, and the two must never disagree.

/// Whether `digits` (ten ASCII digits, nothing else) is a national ID that can exist.
pub fn is_valid(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = b.iter().map(|x| u32::from(x - b'0')).collect();
    !d.iter().all(|&x| x == d[0]) && check_digit(&d[..9]) == d[9]
}

/// The check digit of the nine leading digits: their sum weighted 10 down to 2, mod 11,
/// kept below 2 and taken from 11 above.
pub fn check_digit(first_nine: &[u32]) -> u32 {
    let sum: u32 = first_nine
        .iter()
        .enumerate()
        .map(|(i, &x)| x * (10 - i as u32))
        .sum();
    let r = sum % 11;
    if r < 2 {
        r
    } else {
        11 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_holds_for_known_ids() {
        assert!(is_valid("0499370899"));
        assert!(!is_valid("0499370898"));
        assert!(!is_valid("1111111111"));
        assert!(!is_valid("049937089"));
        assert!(
            !is_valid("۰۴۹۹۳۷۰۸۹۹"),
            "ASCII only: callers fold digits first"
        );
    }
}

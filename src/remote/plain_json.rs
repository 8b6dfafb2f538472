//! A quick yes to "does serde_json read this text as one JSON value?" for
//! the usual stored values (issue 24 item 4: the JS store's get asks it of
//! every document it reads, through `format::value_start`).
//!
//! [`surely_valid`] answers `true` only for a text serde_json reads as a
//! `serde_json::Value` without error: one value, no whitespace, nesting of
//! at most [`MAX_NESTING`] levels, strings of valid UTF-8 with the simple
//! escapes or a `\u` escape of a code point that is no surrogate, numbers
//! of at most [`MAX_DIGITS`] digits in each part and exponents of at most
//! two digits (so finite, whatever the parser). Anything else, valid or
//! not, is `false`: "ask serde_json", which then decides (and words the
//! error). One pass over the bytes, no allocation: serde_json's own check
//! (deserializing into a visitor that keeps nothing) cost about 5x more.

use crate::store::MAX_NESTING;

/// The most digits a number's integer, fraction or exponent part may have
/// for a quick yes (an exponent: 2): below 10^(MAX_DIGITS + 99), finite.
const MAX_DIGITS: usize = 100;

/// Whether `text` is surely one JSON value serde_json reads (see the module).
pub(crate) fn surely_valid(text: &[u8]) -> bool {
    // Bit d of `in_object`: the container at depth d+1 is an object (else an array).
    let mut in_object: u128 = 0;
    let mut depth = 0usize;
    let mut non_ascii = false;
    let mut i = 0usize;
    // Each turn reads one value at `i`, then the punctuation after it.
    loop {
        // A value.
        match text.get(i) {
            Some(b'{') | Some(b'[') => {
                let object = text[i] == b'{';
                if depth >= MAX_NESTING {
                    return false;
                }
                if object {
                    in_object |= 1 << depth;
                } else {
                    in_object &= !(1 << depth);
                }
                depth += 1;
                i += 1;
                // Empty, or the first key.
                match (object, text.get(i)) {
                    (true, Some(b'}')) | (false, Some(b']')) => {
                        depth -= 1;
                        i += 1;
                    }
                    (true, _) => {
                        let Some(end) = string(text, i, &mut non_ascii) else { return false };
                        if text.get(end) != Some(&b':') {
                            return false;
                        }
                        i = end + 1;
                        continue;
                    }
                    (false, _) => continue,
                }
            }
            Some(b'"') => match string(text, i, &mut non_ascii) {
                Some(end) => i = end,
                None => return false,
            },
            Some(b't') if text[i..].starts_with(b"true") => i += 4,
            Some(b'f') if text[i..].starts_with(b"false") => i += 5,
            Some(b'n') if text[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => match number(text, i) {
                Some(end) => i = end,
                None => return false,
            },
            _ => return false,
        }
        // What follows a value: the end of its containers, a comma (then a key in an object).
        loop {
            if depth == 0 {
                return i == text.len() && (!non_ascii || std::str::from_utf8(text).is_ok());
            }
            let object = in_object & (1 << (depth - 1)) != 0;
            match (object, text.get(i)) {
                (true, Some(b'}')) | (false, Some(b']')) => {
                    depth -= 1;
                    i += 1;
                }
                (_, Some(b',')) => {
                    i += 1;
                    if object {
                        let Some(end) = string(text, i, &mut non_ascii) else { return false };
                        if text.get(end) != Some(&b':') {
                            return false;
                        }
                        i = end + 1;
                    }
                    break;
                }
                _ => return false,
            }
        }
    }
}

/// The end (past the closing quote) of the string starting at `at`, if it
/// is one serde_json surely reads; marks `non_ascii` (the UTF-8 check is
/// done once, on the whole text).
fn string(text: &[u8], at: usize, non_ascii: &mut bool) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *text.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = text.get(i + 2..i + 6)?;
                    let mut unit = 0u32;
                    for &h in hex {
                        unit = unit * 16 + char::from(h).to_digit(16)?;
                    }
                    // A surrogate: serde_json pairs it or refuses it; it decides.
                    if (0xD800..0xE000).contains(&unit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            c if c < 0x20 => return None,
            c => {
                if c >= 0x80 {
                    *non_ascii = true;
                }
                i += 1;
            }
        }
    }
}

/// The end of the number starting at `at`, if it is one JSON allows with
/// at most [`MAX_DIGITS`] digits in its integer and fraction parts and at
/// most two in its exponent.
fn number(text: &[u8], at: usize) -> Option<usize> {
    let digits =
        |from: usize| text.get(from..).map_or(0, |rest| rest.iter().take_while(|c| c.is_ascii_digit()).count());
    let mut i = at;
    if text.get(i) == Some(&b'-') {
        i += 1;
    }
    let whole = digits(i);
    // No leading zero (`01`), at least one digit.
    if whole == 0 || whole > MAX_DIGITS || (whole > 1 && text[i] == b'0') {
        return None;
    }
    i += whole;
    if text.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 || fraction > MAX_DIGITS {
            return None;
        }
        i += 1 + fraction;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent = digits(i);
        if exponent == 0 || exponent > 2 {
            return None;
        }
        i += exponent;
    }
    Some(i)
}

/// Whether serde_json writes the `f64` that `token` parses to as `token`
/// itself, known without parsing: `token` is a decimal `-?I.F` as
/// JSON.stringify writes a number that is not whole (no exponent, no
/// trailing zero, no leading zero but a lone `0`), with at most 15
/// significant digits and, below 1, at most four zeros after the point.
/// Why: a decimal of at most 15 significant digits (f64's DBL_DIG) is the
/// only one of at most 15 digits that rounds to its `f64`, so the shortest
/// digits that read back as that `f64` (what serde_json's writer, ryu,
/// writes) are its digits; and ryu writes them without an exponent from
/// 1e-5 up to 1e16 (its `format64`: `-5 < kk <= 16`). `false` means "ask
/// serde_json" (the caller parses and writes the number).
pub(crate) fn short_decimal_as_written(token: &[u8]) -> bool {
    let unsigned = token.strip_prefix(b"-").unwrap_or(token);
    let Some(dot) = unsigned.iter().position(|&c| c == b'.') else { return false };
    let (whole, fraction) = (&unsigned[..dot], &unsigned[dot + 1..]);
    if whole.is_empty() || fraction.is_empty() || fraction.last() == Some(&b'0') {
        return false;
    }
    if !whole.iter().chain(fraction).all(u8::is_ascii_digit) || (whole.len() > 1 && whole[0] == b'0') {
        return false;
    }
    let significant = if whole == b"0" {
        let zeros = fraction.iter().take_while(|&&c| c == b'0').count();
        if zeros > 4 {
            return false;
        }
        fraction.len() - zeros
    } else {
        whole.len() + fraction.len()
    };
    significant <= 15
}

/// Whether `text` (UTF-8), the `JSON.stringify` text of a value, is byte
/// for byte what the wasm walk (`encode` in src/wasm_redis) writes for that
/// value, `nulls` being how many of its values were `null`: no lone
/// surrogate (JSON.stringify escapes it, the walk refuses it), nested at
/// most [`MAX_NESTING`] levels, every `null` of the text a null (not NaN or
/// an infinity; the JS layer counts an `undefined` array element, which both
/// write as `null`, as one), and every number as
/// serde_json writes it ([`number_as_written`]). The JS layer asks only for
/// a value whose stringify met no `toJSON`, function, symbol, bigint or
/// object that is neither an array nor a plain object.
pub(crate) fn plain_text(bytes: &[u8], nulls: u32) -> bool {
    let (mut i, mut depth, mut seen) = (0usize, 0usize, 0u32);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return false;
                }
                i += 1;
            }
            b']' | b'}' => {
                let Some(up) = depth.checked_sub(1) else { return false };
                depth = up;
                i += 1;
            }
            b',' | b':' => i += 1,
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        // Only the escapes both JSON.stringify and serde_json write: `\"`, `\\`, the
                        // five short ones, and `\u00xx` (lowercase) for any other control character.
                        // Anything else (`\/`, `\u00e9`, a lone surrogate's `\udXXX`, which the walk
                        // refuses) is no text of JSON.stringify's that the walk writes alike.
                        Some(b'\\') => match bytes.get(i + 1) {
                            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                            Some(b'u') => match bytes.get(i + 2..i + 6) {
                                Some(&[b'0', b'0', high @ (b'0' | b'1'), low])
                                    if matches!(low, b'0'..=b'9' | b'a'..=b'f')
                                        && !matches!((high, low), (b'0', b'8' | b'9' | b'a' | b'c' | b'd')) =>
                                {
                                    i += 6
                                }
                                _ => return false,
                            },
                            _ => return false,
                        },
                        // A control character JSON.stringify would have escaped: not its text.
                        Some(c) if *c < 0x20 => return false,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'n' if bytes[i..].starts_with(b"null") => {
                seen += 1;
                i += 4;
            }
            b't' if bytes[i..].starts_with(b"true") => i += 4,
            b'f' if bytes[i..].starts_with(b"false") => i += 5,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while bytes.get(i).is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    i += 1;
                }
                // ASCII: the token is text.
                if !std::str::from_utf8(&bytes[start..i]).is_ok_and(number_as_written) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    depth == 0 && seen == nulls
}

/// Whether serde_json writes the JS number `token` stands for as `token`,
/// by the wasm walk's rule (`JsJson` in src/wasm_redis: a whole number up
/// to 2^53 as an integer, any other as an `f64`).
pub(crate) fn number_as_written(token: &str) -> bool {
    let digits = token.strip_prefix('-').unwrap_or(token);
    // Up to 15 digits, no leading zero: a whole number below 2^53, written as it is.
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|c| c.is_ascii_digit()) {
        return digits == "0" && token == "0" || !digits.starts_with('0');
    }
    // A short decimal (7.5, 0.25): known without parsing (its proof: remote/plain_json.rs).
    if short_decimal_as_written(token.as_bytes()) {
        return true;
    }
    // serde_json's own parser (float_roundtrip: exact), already in the .wasm (std's is not).
    let Ok(n) = serde_json::from_str::<f64>(token) else { return false };
    let mut out = [0u8; 40];
    let mut writer = &mut out[..];
    // JsJson's rule: whole numbers up to 2^53 as integers, others as f64.
    let written = if let Some(i) = js_integer(n) {
        serde_json::to_writer(&mut writer, &i)
    } else {
        serde_json::to_writer(&mut writer, &n)
    };
    if written.is_err() {
        return false;
    }
    let left = writer.len();
    &out[..out.len() - left] == token.as_bytes()
}

/// The largest whole number up to which every whole `f64` is exact (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// JsJson's number rule (how a JS number is written, as JSON.stringify and a
/// Rust reader of an integer type need it): a whole number up to 2^53 as an
/// integer, `None` for any other number (written as an f64).
#[inline]
pub(crate) fn js_integer(n: f64) -> Option<i64> {
    (n.fract() == 0.0 && n.abs() <= EXACT).then_some(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's answer, the reference.
    fn serde_reads(text: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(text).is_ok()
    }

    #[test]
    fn the_usual_values_are_a_quick_yes() {
        for text in [
            r#"{"id":5,"name":"user 5","tags":["a","b"],"score":7.5}"#,
            r#"[]"#,
            r#"{}"#,
            r#"[[],{},[{}]]"#,
            r#""""#,
            r#""a\"\\\/\b\f\n\r\t\u00e9\uFFFF""#,
            "\"日本 😀\"",
            r#"{"a":{"b":[1,-2,0,0.5,-0.25,1e5,1E-5,2.5e+10,null,true,false]}}"#,
            r#"-0"#,
            r#"123456789012345678901234567890"#,
        ] {
            assert!(surely_valid(text.as_bytes()), "{text}");
            assert!(serde_reads(text.as_bytes()), "{text}");
        }
        let deepest = format!("{}1{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(surely_valid(deepest.as_bytes()));
    }

    #[test]
    fn what_serde_json_refuses_or_may_refuse_is_no_quick_yes() {
        let deeper = format!("{}1{}", "[".repeat(MAX_NESTING + 1), "]".repeat(MAX_NESTING + 1));
        let long = format!("1{}", "0".repeat(MAX_DIGITS));
        for text in [
            "",
            " 1",
            "1 ",
            "[1, 2]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e400",
            "1e-400",
            "1e+",
            "+1",
            "NaN",
            "Infinity",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{\"a\":}",
            "{1:2}",
            "{\"a\" :1}",
            "[1}",
            "{\"a\":1]",
            "[",
            "]",
            "\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud83d\\ude00\"",
            "\"a\nb\"",
            "tru",
            "nul",
            "1 2",
            "[1][2]",
            "\"\u{7f}\"x",
            &deeper,
            &long,
        ] {
            assert!(!surely_valid(text.as_bytes()), "{text:?}");
        }
        // Invalid UTF-8 in a string.
        assert!(!surely_valid(b"\"\xff\""));
        assert!(!surely_valid(b"\"\xc3\""));
        assert!(!surely_valid(b"[\"\xed\xa0\x80\"]"), "a surrogate's UTF-8 form");
    }
}

#[cfg(test)]
mod decimal_tests {
    use super::*;

    /// serde_json's text of the `f64` `token` reads as.
    fn serde_writes(token: &str) -> String {
        serde_json::to_string(&token.parse::<f64>().unwrap()).unwrap()
    }

    #[test]
    fn short_decimals_are_written_as_they_are_and_others_are_asked() {
        for token in
            ["7.5", "-0.25", "0.1", "0.00001", "0.30000000000000004", "123456789.12345", "1.5", "99999999999999.9"]
        {
            let quick = short_decimal_as_written(token.as_bytes());
            let asked = serde_writes(token) == token;
            assert!(!quick || asked, "{token}: quick yes, serde writes {}", serde_writes(token));
        }
        for token in ["7.5", "-0.25", "0.1", "0.00001", "123456789.12345", "99999999999999.9"] {
            assert!(short_decimal_as_written(token.as_bytes()), "{token}");
        }
        // Asked: an exponent, past 15 digits, five zeros after the point, a trailing zero, no fraction.
        for token in
            ["1e21", "1.5e-7", "0.30000000000000004", "0.000001", "7.50", "7", "-", ".5", "5.", "01.5", "1.2.3", "1.a"]
        {
            assert!(!short_decimal_as_written(token.as_bytes()), "{token}");
        }
    }
}

#[cfg(test)]
mod plain_text_tests {
    use super::*;

    /// The walk's text of the number `n` (a whole one up to 2^53 as an integer, else serde_json's f64).
    fn walk_writes(n: f64) -> String {
        if n.fract() == 0.0 && n.abs() <= EXACT {
            serde_json::to_string(&(n as i64)).unwrap()
        } else {
            serde_json::to_string(&n).unwrap()
        }
    }

    #[test]
    fn a_number_is_yes_exactly_where_the_walk_writes_it_as_it_is() {
        // JSON.stringify's texts of numbers: yes where serde_json writes the number read the same.
        for token in [
            "0",
            "-1",
            "7",
            "123456789012345",
            "9007199254740992",
            "9007199254740993",
            "7.5",
            "-0.25",
            "0.1",
            "1e+21",
            "1e21",
            "1.5e-7",
            "5e-324",
            "1.7976931348623157e+308",
            "1152921504606846976",
            "0.30000000000000004",
            "100000000000000000000",
            "1e-7",
            "-0",
            "0.000001",
        ] {
            let read: f64 = token.parse().unwrap();
            assert_eq!(
                number_as_written(token),
                walk_writes(read) == token,
                "{token}: the walk writes {}",
                walk_writes(read)
            );
        }
        // JSON.stringify's forms serde_json writes otherwise.
        for token in ["1152921504606846976", "100000000000000000000", "-0", "1e21"] {
            assert!(!number_as_written(token), "{token}");
        }
        for token in ["7", "-0.25", "1e+21", "1.5e-7", "5e-324"] {
            assert!(number_as_written(token), "{token}");
        }
        // No numbers at all.
        for token in ["00", "01", "1.", ".5", "1e", "--1", "1e400", "", "-", "+1", "1e+"] {
            assert!(!number_as_written(token), "{token:?}");
        }
    }

    #[test]
    fn stringify_texts_the_walk_writes_alike_are_yes() {
        for (text, nulls) in [
            (r#"{"a":1,"b":[true,false,null],"c":{"d":"x\"\\\n\u001f"}}"#, 1),
            (r#"[]"#, 0),
            (r#""日本 😀""#, 0),
            (r#"[null,null]"#, 2),
            (r#"{"a":-0.5,"b":1e+21,"c":0.1}"#, 0),
        ] {
            assert!(plain_text(text.as_bytes(), nulls), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
        }
        let deepest = format!("{}1{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(plain_text(deepest.as_bytes(), 0));
    }

    #[test]
    fn what_the_walk_writes_otherwise_or_refuses_is_no() {
        let deeper = format!("{}1{}", "[".repeat(MAX_NESTING + 1), "]".repeat(MAX_NESTING + 1));
        for (text, nulls) in [
            // A null of the text that was no null (NaN, an infinity, an undefined element): the count differs.
            ("[null]", 0),
            ("[1]", 1),
            // A lone surrogate, escaped by JSON.stringify: the walk refuses it.
            (r#""\ud800""#, 0),
            (r#""\udfff""#, 0),
            // Escapes JSON.stringify never writes (serde_json reads them; the walk writes the character).
            (r#""\u00e9""#, 0),
            (r#""\u001F""#, 0),
            (r#""\u000a""#, 0),
            (r#""\u0041""#, 0),
            (r#""a\/b""#, 0),
            // A raw control character: JSON.stringify escapes it, so this is no text of it.
            ("\"a\u{1}b\"", 0),
            ("[1e21]", 0),
            ("[1152921504606846976]", 0),
            ("[1", 0),
            ("1]", 0),
            ("\"open", 0),
            ("\"a\\", 0),
            ("undefined", 0),
            ("nul", 0),
            (&deeper, 0),
        ] {
            assert!(!plain_text(text.as_bytes(), nulls), "{text:?} {nulls}");
        }
    }
}

/// The quick yes must never say yes where serde_json says no.
// proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod fuzz_tests {
    use super::*;
    use crate::remote::format::fuzz_tests::json_value;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "{", "}", "[", "]", ",", ":", "\"", "\"a\"", "\\", "\\u", "d800", "dc00", "00e9", "0", "1", "-", ".", "e", "E",
        "+", "9", "00", "true", "false", "null", " ", "\u{e9}", "\n", "1e99", "1e100", "\\n", "\\x", "/", "001f",
        "0008", "00E9",
    ];

    fn cases(base: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(base)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(20_000), ..ProptestConfig::default() })]

        #[test]
        fn fuzz_spliced_text_yes_only_where_serde_reads(pieces in proptest::collection::vec(0..PIECES.len(), 0..16)) {
            let text: Vec<u8> = pieces.iter().flat_map(|&p| PIECES[p].bytes()).collect();
            if surely_valid(&text) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok(), "{}", String::from_utf8_lossy(&text));
            }
        }

        #[test]
        fn fuzz_arbitrary_bytes_yes_only_where_serde_reads(text in proptest::collection::vec(any::<u8>(), 0..40)) {
            if surely_valid(&text) {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&text).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn fuzz_short_decimals_are_what_serde_writes(x in any::<f64>(), digits in "[0-9]{1,17}", point in 0usize..17, minus in any::<bool>()) {
            // What a JS number's text may be: serde's own text of an f64, and decimals made up.
            let cut = point.min(digits.len() - 1) + 1;
            let whole = digits[..cut].trim_start_matches('0');
            let whole = if whole.is_empty() { "0" } else { whole };
            let made = format!("{}{}.{}", if minus { "-" } else { "" }, whole, &digits[cut..]);
            for token in [serde_json::to_string(&x).unwrap_or_default(), made] {
                if short_decimal_as_written(token.as_bytes()) {
                    let read: f64 = token.parse().unwrap();
                    prop_assert_eq!(serde_json::to_string(&read).unwrap(), token);
                }
            }
        }

        #[test]
        fn fuzz_number_as_written_only_where_serde_writes_it_so(x in any::<f64>(), int in any::<i64>(), digits in "[0-9]{1,20}", point in 0usize..21, exp in -330i32..330, minus in any::<bool>()) {
            // Tokens JSON.stringify may write (serde's own f64 text, integers, made-up decimals, exponents
            // with and without '+') and near misses: a yes must be serde_json's text of the number read.
            let sign = if minus { "-" } else { "" };
            let cut = point.min(digits.len());
            let tokens = [
                serde_json::to_string(&x).unwrap_or_default(),
                int.to_string(),
                format!("{sign}{digits}"),
                format!("{sign}{}.{}", &digits[..cut], &digits[cut..]),
                format!("{sign}{}e{exp}", &digits[..1]),
                format!("{sign}{}e+{exp}", &digits[..1]),
                format!("{x:e}"),
            ];
            for token in tokens {
                if number_as_written(&token) {
                    let read: f64 = serde_json::from_str(&token).unwrap();
                    let written = if read.fract() == 0.0 && read.abs() <= EXACT {
                        serde_json::to_string(&(read as i64)).unwrap()
                    } else {
                        serde_json::to_string(&read).unwrap()
                    };
                    prop_assert_eq!(written, token);
                }
            }
        }

        #[test]
        fn fuzz_plain_text_yes_only_for_the_walks_text_with_those_nulls(pieces in proptest::collection::vec(0..PIECES.len(), 0..16), nulls in 0u32..3) {
            // plainText judges JSON.stringify's texts, one JSON value each: of the texts serde_json
            // reads, a yes must have those nulls and (without objects, whose keys it may reorder) be
            // byte for byte what the walk writes for that value.
            let text: Vec<u8> = pieces.iter().flat_map(|&p| PIECES[p].bytes()).collect();
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text)
                && plain_text(&text, nulls)
            {
                prop_assert_eq!(count_nulls(&value), nulls, "{}", String::from_utf8_lossy(&text));
                if !text.contains(&b'{') {
                    prop_assert_eq!(serde_json::to_vec(&walk_form(&value)).unwrap(), text);
                }
            }
        }

        #[test]
        fn fuzz_the_walks_text_is_plain(value in json_value()) {
            // What the walk writes (serde_json, whole numbers up to 2^53 as integers): a yes, with its nulls.
            let text = serde_json::to_vec(&walk_form(&value)).unwrap();
            prop_assert!(plain_text(&text, count_nulls(&value)), "{}", String::from_utf8_lossy(&text));
        }

        #[test]
        fn fuzz_written_values_are_a_quick_yes(value in json_value()) {
            // What serde_json writes (compact) is what the stores write: a quick yes unless it has
            // a surrogate escape (it writes none), a long number or deep nesting (none here).
            let text = serde_json::to_vec(&value).unwrap();
            prop_assert!(surely_valid(&text) || has_long_number(&text), "{}", String::from_utf8_lossy(&text));
        }
    }

    /// The `null`s of `value`, as the JS copy counts them.
    fn count_nulls(value: &serde_json::Value) -> u32 {
        match value {
            serde_json::Value::Null => 1,
            serde_json::Value::Array(items) => items.iter().map(count_nulls).sum(),
            serde_json::Value::Object(map) => map.values().map(count_nulls).sum(),
            _ => 0,
        }
    }

    /// `value` with its numbers as the walk writes them (a whole f64 up to 2^53 as an integer).
    fn walk_form(value: &serde_json::Value) -> serde_json::Value {
        match value {
            // A JS number is an f64: an i64 or u64 past 2^53 is the f64 nearest it.
            serde_json::Value::Number(n) => {
                let f = n.as_f64().unwrap_or_default();
                if f.fract() == 0.0 && f.abs() <= EXACT {
                    serde_json::Value::from(f as i64)
                } else {
                    serde_json::Value::from(f)
                }
            }
            serde_json::Value::Array(items) => items.iter().map(walk_form).collect(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), walk_form(v))).collect(),
            _ => value.clone(),
        }
    }

    /// Whether `text` has an exponent of three digits (serde_json writes 1e-300 and 1e+300 so).
    fn has_long_number(text: &[u8]) -> bool {
        text.windows(5).any(|w| {
            let digits = if matches!(w[1], b'-' | b'+') { &w[2..5] } else { &w[1..4] };
            w[0] == b'e' && digits.iter().all(u8::is_ascii_digit)
        })
    }
}

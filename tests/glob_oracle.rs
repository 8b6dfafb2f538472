#![cfg(not(target_arch = "wasm32"))]
//! The glob matcher against an oracle: a plain recursive port of Redis's own
//! `stringmatchlen` (src/util.c, case-sensitive), byte for byte, quirks
//! included. The oracle is exponential on hostile patterns, so it only ever
//! sees short ones; the fast matcher must agree with it on all of them.

use pepperpy_caching::{Pattern, escape_pattern};
use proptest::prelude::*;

/// Redis's matcher, recursive as in Redis. `p` and `s` are read as if
/// NUL-terminated, as the C code reads them.
fn redis_match(p: &[u8], s: &[u8]) -> bool {
    let mut skip_longer = false;
    redis_impl(p, s, &mut skip_longer, 0)
}

fn redis_impl(p: &[u8], s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let at = |buf: &[u8], i: usize| buf.get(i).copied().unwrap_or(0);
    let (mut pi, mut si) = (0usize, 0usize);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi < p.len() && at(p, pi + 1) == b'*' {
                    pi += 1;
                }
                if p.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if redis_impl(&p[pi + 1..], &s[si..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let not = at(p, pi) == b'^';
                if not {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    let left = p.len().saturating_sub(pi);
                    if at(p, pi) == b'\\' && left >= 2 {
                        pi += 1;
                        if p[pi] == s[si] {
                            matched = true;
                        }
                    } else if at(p, pi) == b']' {
                        break;
                    } else if left == 0 {
                        pi -= 1;
                        break;
                    } else if left >= 3 && p[pi + 1] == b'-' {
                        let (mut start, mut end) = (p[pi] as i8 as i32, p[pi + 2] as i8 as i32);
                        let c = s[si] as i8 as i32;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pi += 2;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if p[pi] == s[si] {
                        matched = true;
                    }
                    pi += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            b'\\' => {
                if p.len() - pi >= 2 {
                    pi += 1;
                }
                if p[pi] != s[si] {
                    return false;
                }
                si += 1;
            }
            c => {
                if c != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(p, pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= p.len() && si == s.len()
}

const PATTERN_ATOMS: &[&str] = &["a", "b", "c", "*", "?", "[", "]", "^", "-", "\\", "é", "z"];
const KEY_ATOMS: &[&str] = &["a", "b", "c", "*", "?", "[", "]", "^", "-", "\\", "é", "z", "A"];

fn text(atoms: &'static [&'static str], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(atoms), len).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_redis(pattern in text(PATTERN_ATOMS, 1..9), key in text(KEY_ATOMS, 1..9)) {
        let ours = Pattern::new(&pattern).unwrap().matches(&key);
        prop_assert_eq!(ours, redis_match(pattern.as_bytes(), key.as_bytes()), "pattern {:?} key {:?}", pattern, key);
    }

    #[test]
    fn escaped_text_matches_only_itself(raw in text(PATTERN_ATOMS, 1..8), other in text(KEY_ATOMS, 1..8)) {
        let pattern = Pattern::new(&escape_pattern(&raw)).unwrap();
        prop_assert!(pattern.matches(&raw));
        prop_assert_eq!(pattern.matches(&other), other == raw);
    }
}

#[test]
fn the_oracle_is_the_redis_matcher() {
    // Spot checks of the port itself, from Redis's documented behaviour.
    assert!(redis_match(b"h?llo", b"hello"));
    assert!(redis_match(b"h*llo", b"heeeello"));
    assert!(redis_match(b"h[ae]llo", b"hallo"));
    assert!(!redis_match(b"h[^e]llo", b"hello"));
    assert!(redis_match(b"h[a-b]llo", b"hbllo"));
    assert!(!redis_match(b"*", b""));
}

#![cfg(not(target_arch = "wasm32"))]
//! The glob matcher against an oracle: a plain recursive port of Redis's own
//! `stringmatchlen` (src/util.c, case-sensitive), byte for byte, quirks
//! included. The oracle is exponential on hostile patterns, so it only ever
//! sees short ones; the fast matcher must agree with it on all of them. Long
//! patterns and keys are checked against a second, dynamic-programming oracle.

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

/// One unit of a well-formed pattern, for the long-input oracle below.
#[derive(Clone, Copy, Debug)]
enum Atom {
    Byte(u8),
    Any,
    Star,
    /// `[ab]`
    ClassAb,
    /// `[^a]`
    NotA,
}

impl Atom {
    fn text(self) -> String {
        match self {
            Atom::Byte(b'*') => "\\*".into(),
            Atom::Byte(b) => (b as char).to_string(),
            Atom::Any => "?".into(),
            Atom::Star => "*".into(),
            Atom::ClassAb => "[ab]".into(),
            Atom::NotA => "[^a]".into(),
        }
    }

    fn matches(self, c: u8) -> bool {
        match self {
            Atom::Byte(b) => b == c,
            Atom::Any | Atom::Star => true,
            Atom::ClassAb => c == b'a' || c == b'b',
            Atom::NotA => c != b'a',
        }
    }
}

/// Glob matching by dynamic programming over (atom, key byte): slow
/// (atoms x bytes) but obviously right, so it can check the fast matcher on
/// inputs far too long for the recursive oracle.
fn dp_match(atoms: &[Atom], key: &[u8]) -> bool {
    if key.is_empty() {
        return atoms.is_empty();
    }
    // row[j]: atoms[..i] match key[..j].
    let mut row = vec![false; key.len() + 1];
    row[0] = true;
    for &atom in atoms {
        let mut next = vec![false; key.len() + 1];
        for j in 0..=key.len() {
            next[j] = match atom {
                Atom::Star => row[j] || (j > 0 && next[j - 1]),
                _ => j > 0 && row[j - 1] && atom.matches(key[j - 1]),
            };
        }
        row = next;
    }
    row[key.len()]
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        6 => proptest::sample::select(vec![b'a', b'b', b'*']).prop_map(Atom::Byte),
        3 => Just(Atom::Any),
        1 => Just(Atom::Star),
        1 => Just(Atom::ClassAb),
        1 => Just(Atom::NotA),
    ]
}

/// Keys mostly of `a`, so long literal and wildcard runs nearly match
/// everywhere: the inputs that make naive matchers slow and expose
/// off-by-ones in the segment search.
fn long_key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![8 => Just('a'), 1 => Just('b'), 1 => Just('*')], 1..400)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Long patterns (segments past the short and one-word limits of the
    /// matcher) and long keys, against the dynamic-programming oracle.
    #[test]
    fn long_inputs_agree_with_the_dp_oracle(atoms in proptest::collection::vec(atom(), 1..160), key in long_key()) {
        let pattern: String = atoms.iter().map(|a| a.text()).collect();
        let ours = Pattern::new(&pattern).unwrap().matches(&key);
        prop_assert_eq!(ours, dp_match(&atoms, key.as_bytes()), "pattern {:?} key {:?}", pattern, key);
    }

    /// A key built to match: the pattern with every `?`/class replaced by a
    /// byte it accepts and every star by a random run, so matches (rare in
    /// the test above for long patterns) are checked as much as misses.
    #[test]
    fn long_matching_inputs_agree_with_the_dp_oracle(
        atoms in proptest::collection::vec(atom(), 1..160),
        fill in proptest::collection::vec(0usize..4, 160),
        flip in 0usize..400,
    ) {
        let mut key = Vec::new();
        for (atom, n) in atoms.iter().zip(&fill) {
            match atom {
                Atom::Byte(b) => key.push(*b),
                Atom::Star => key.extend(std::iter::repeat_n(b'a', *n)),
                Atom::NotA => key.push(b'b'),
                Atom::Any | Atom::ClassAb => key.push(b'a'),
            }
        }
        // Sometimes break it by one byte.
        if flip < key.len() && flip % 3 == 0 {
            key[flip] = if key[flip] == b'a' { b'b' } else { b'a' };
        }
        let key = String::from_utf8(key).unwrap();
        let pattern: String = atoms.iter().map(|a| a.text()).collect();
        let ours = Pattern::new(&pattern).unwrap().matches(&key);
        prop_assert_eq!(ours, dp_match(&atoms, key.as_bytes()), "pattern {:?} key {:?}", pattern, key);
    }
}

#[test]
fn the_dp_oracle_agrees_with_the_redis_oracle() {
    let atoms = [Atom::Star, Atom::Byte(b'a'), Atom::Any, Atom::ClassAb, Atom::Star, Atom::NotA];
    for key in ["aab", "xaaab", "aabb", "ab", "aaaaa", "a*ab"] {
        let pattern: String = atoms.iter().map(|a| a.text()).collect();
        assert_eq!(dp_match(&atoms, key.as_bytes()), redis_match(pattern.as_bytes(), key.as_bytes()), "{key}");
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

/// The case count of a fuzz test: `PROPTEST_CASES` if set (CI's fuzz step
/// and longer runs on demand), else `base`.
fn fuzz_cases(base: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(base)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(5_000), ..ProptestConfig::default() })]

    /// Beyond the atoms above: any characters, the glob's specials among
    /// multi-byte ones, in any order (a `]` before its `[`, `^` and `-` at
    /// the edges, a trailing `\`), against Redis's matcher.
    #[test]
    fn fuzz_any_short_text_agrees_with_redis(
        pattern in r"[*?\[\]\\^a-cé€\x00-]{1,9}",
        key in r"[a-cé€*?\[\]\\^\x00-]{0,9}",
    ) {
        let ours = Pattern::new(&pattern).unwrap().matches(&key);
        prop_assert_eq!(ours, redis_match(pattern.as_bytes(), key.as_bytes()), "pattern {:?} key {:?}", pattern, key);
    }

    /// Any string as a pattern or a key: a pattern or an error, an answer,
    /// never a panic, whatever the input (lengths past the limit included).
    #[test]
    fn fuzz_any_string_is_a_pattern_or_an_error(pattern in ".{0,40}", key in ".{0,40}", repeat in 1usize..400) {
        let long = pattern.repeat(repeat);
        for p in [&pattern, &long] {
            match Pattern::new(p) {
                Ok(compiled) => {
                    let _ = compiled.matches(&key);
                    let _ = compiled.matches(&long);
                    prop_assert!(!p.is_empty() && p.len() <= pepperpy_caching::MAX_PATTERN_LEN);
                }
                Err(e) => {
                    let is_pattern_error = matches!(e, pepperpy_caching::CacheError::Pattern { .. });
                    prop_assert!(is_pattern_error, "{:?}", e);
                }
            }
        }
        // Text escaped is a pattern matching exactly itself.
        if !key.is_empty() && escape_pattern(&key).len() <= pepperpy_caching::MAX_PATTERN_LEN {
            prop_assert!(Pattern::new(&escape_pattern(&key)).unwrap().matches(&key));
        }
    }
}

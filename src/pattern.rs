//! Redis glob patterns, matched exactly as Redis matches them.
//!
//! A pattern selects keys for [`invalidate`](crate::CacheStore::invalidate) and
//! [`keys`](crate::CacheStore::keys). It must mean the same in memory as in
//! Redis, so this module follows Redis's `stringmatchlen` rule for rule:
//!
//! | syntax | matches |
//! | --- | --- |
//! | `*` | any run of bytes, including none |
//! | `?` | exactly one byte |
//! | `[abc]`, `[a-z]` | one byte in the set or range (a reversed range `[z-a]` is the same as `[a-z]`) |
//! | `[^abc]` | one byte not in the set |
//! | `\x` | the byte `x` itself, also inside `[...]` |
//!
//! Like Redis, matching works on bytes, not characters: `?` matches one byte,
//! so a two-byte UTF-8 character such as `é` needs `??`. An unclosed `[` runs to
//! the end of the pattern, as in Redis. Range ends compare as signed bytes, as
//! Redis does on x86-64, which matters only for non-ASCII range ends.
//!
//! Unlike Redis before its fixes for CVE-2022-36021 and CVE-2024-31228, the
//! matcher never recurses or backtracks: it compiles the pattern to tokens,
//! splits them at the stars into segments, and finds each segment between two
//! stars at its leftmost place after the one before (leftmost is always right
//! for `*`). A segment of plain bytes is found with a linear-time substring
//! search (`memchr::memmem`, two-way with SIMD prefilters), a short segment with
//! `?` or classes by direct comparison, a long one by bit-parallel shift-and;
//! each key byte is examined a bounded number of times, so a match costs
//! O(key bytes x (1 + segment tokens / 64)) plus the pattern's own length,
//! whatever the pattern. `"*" + "a" x 1022 + "b"` against an 8 KiB key of `a`s
//! is one substring search, not eight million comparisons.
//! Patterns longer than [`MAX_PATTERN_LEN`] bytes are rejected up front.

use crate::errors::{CacheError, Result};

/// The longest pattern accepted, in bytes.
///
/// At this length a pattern holds at most 512 stars, below the 1000 at which
/// Redis stops matching, so every accepted pattern means the same here and there.
pub const MAX_PATTERN_LEN: usize = 1024;

/// A compiled glob pattern.
///
/// ```
/// use pepperpy_caching::Pattern;
/// let p = Pattern::new("user:[0-9]*")?;
/// assert!(p.matches("user:42"));
/// assert!(!p.matches("user:me"));
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pattern {
    source: Box<str>,
    tokens: Box<[Token]>,
    /// The runs of tokens between stars, in order (stars themselves excluded,
    /// no empty run).
    segments: Box<[Segment]>,
    /// Whether the pattern has a star at all.
    starred: bool,
    /// Whether the first segment is pinned to the start of the key (the
    /// pattern does not begin with a star) and the last to its end.
    pinned_start: bool,
    pinned_end: bool,
}

/// A run of non-star tokens, and how to find it in a key.
#[derive(Clone, Debug)]
struct Segment {
    /// `tokens[start..start + len]` of the pattern.
    start: usize,
    len: usize,
    find: Finder,
}

#[derive(Clone, Debug)]
enum Finder {
    /// Only plain bytes: a linear-time substring search.
    Literal(Box<memchr::memmem::Finder<'static>>),
    /// At most [`NAIVE_MAX`] tokens, some `?` or classes: compared at each offset.
    Short,
    /// Longer, with `?` or classes: shift-and, one bit per token, `words`
    /// u64s per state; `table[b * words..][..words]` has the bit of every
    /// token that matches byte `b`.
    ShiftAnd { words: usize, table: Box<[u64]> },
}

/// Segments with `?` or classes up to this many tokens are compared directly
/// at each offset: at most this many comparisons per key byte.
const NAIVE_MAX: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// Any run of bytes; consecutive stars are folded into one.
    Star,
    /// Any one byte.
    Any,
    /// One given byte.
    Byte(u8),
    /// One byte whose bit is set (negation already applied).
    Class(Box<ByteSet>),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
    fn invert(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }
}

impl Token {
    #[inline]
    fn matches(&self, b: u8) -> bool {
        match self {
            Token::Star => true,
            Token::Any => true,
            Token::Byte(x) => *x == b,
            Token::Class(set) => set.contains(b),
        }
    }
}

impl Pattern {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// [`CacheError::Pattern`] when the pattern is empty (it would match no key;
    /// `*` matches all) or longer than [`MAX_PATTERN_LEN`] bytes.
    pub fn new(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(CacheError::pattern(pattern, "a pattern must not be empty (use \"*\" to match every key)"));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(CacheError::pattern(
                pattern,
                format!("{} bytes is longer than the limit of {MAX_PATTERN_LEN} bytes", pattern.len()),
            ));
        }
        Ok(Self::compile(pattern))
    }

    /// Compiles without the length check; the matcher's cost bound holds for
    /// any length, and the tests use it on patterns far past the limit.
    pub(crate) fn compile(pattern: &str) -> Self {
        let p = pattern.as_bytes();
        let n = p.len();
        let mut tokens = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            match p[i] {
                b'*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                b'?' => tokens.push(Token::Any),
                b'[' => {
                    i += 1;
                    let negate = i < n && p[i] == b'^';
                    if negate {
                        i += 1;
                    }
                    let mut set = ByteSet::default();
                    loop {
                        if i + 1 < n && p[i] == b'\\' {
                            i += 1;
                            set.insert(p[i]);
                        } else if i < n && p[i] == b']' {
                            break;
                        } else if i >= n {
                            // Unclosed: the class runs to the end of the pattern.
                            i = n - 1;
                            break;
                        } else if i + 2 < n && p[i + 1] == b'-' {
                            // Redis compares range ends as (signed on x86-64) chars.
                            let (mut lo, mut hi) = (p[i] as i8, p[i + 2] as i8);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            for b in 0..=255u8 {
                                if (lo..=hi).contains(&(b as i8)) {
                                    set.insert(b);
                                }
                            }
                            i += 2;
                        } else {
                            set.insert(p[i]);
                        }
                        i += 1;
                    }
                    if negate {
                        set.invert();
                    }
                    tokens.push(Token::Class(Box::new(set)));
                }
                b'\\' if i + 1 < n => {
                    i += 1;
                    tokens.push(Token::Byte(p[i]));
                }
                b => tokens.push(Token::Byte(b)),
            }
            i += 1;
        }
        let segments = split(&tokens);
        Pattern {
            source: pattern.into(),
            starred: tokens.contains(&Token::Star),
            pinned_start: tokens.first().is_some_and(|t| *t != Token::Star),
            pinned_end: tokens.last().is_some_and(|t| *t != Token::Star),
            segments,
            tokens: tokens.into_boxed_slice(),
        }
    }

    /// The plain bytes every matching key starts with: the tokens before the
    /// first `*`, `?` or class, escapes resolved. Redis matches a pattern made
    /// of this (escaped) and one trailing `*` in time linear in its length.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn literal_prefix(&self) -> Vec<u8> {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &str) -> bool {
        self.matches_counting(key.as_bytes(), &mut 0)
    }

    /// The matcher, adding to `steps` the key bytes it examined (times the
    /// state words of a shift-and), so tests can check the cost bound
    /// without a clock.
    fn matches_counting(&self, key: &[u8], steps: &mut u64) -> bool {
        if key.is_empty() {
            // Redis matches an empty string only against an empty pattern.
            return self.tokens.is_empty();
        }
        let segments = &self.segments[..];
        if !self.starred {
            return segments.first().is_some_and(|seg| seg.len == key.len() && self.matches_at(seg, key, steps));
        }
        let (mut from, mut to) = (0, key.len());
        let (mut first, mut last) = (0, segments.len());
        if self.pinned_start {
            let seg = &segments[0];
            if seg.len > key.len() || !self.matches_at(seg, &key[..seg.len], steps) {
                return false;
            }
            from = seg.len;
            first = 1;
        }
        if self.pinned_end && last > first {
            let seg = &segments[last - 1];
            if seg.len > to - from || !self.matches_at(seg, &key[to - seg.len..], steps) {
                return false;
            }
            to -= seg.len;
            last -= 1;
        }
        // Each segment between stars at its leftmost place after the previous
        // one: a later place never leaves more room for the rest.
        for seg in &segments[first..last] {
            match self.find(seg, &key[from..to], steps) {
                Some(at) => from += at + seg.len,
                None => return false,
            }
        }
        true
    }

    fn seg_tokens(&self, seg: &Segment) -> &[Token] {
        &self.tokens[seg.start..seg.start + seg.len]
    }

    /// Whether `seg` matches `text` from its start (`text` is at least as long).
    fn matches_at(&self, seg: &Segment, text: &[u8], steps: &mut u64) -> bool {
        *steps += seg.len as u64;
        self.seg_tokens(seg).iter().zip(text).all(|(t, &b)| t.matches(b))
    }

    /// The leftmost offset in `hay` where `seg` matches.
    fn find(&self, seg: &Segment, hay: &[u8], steps: &mut u64) -> Option<usize> {
        if seg.len > hay.len() {
            return None;
        }
        match &seg.find {
            Finder::Literal(finder) => {
                let at = finder.find(hay);
                *steps += at.map_or(hay.len(), |at| at + seg.len) as u64;
                at
            }
            Finder::Short => {
                let tokens = self.seg_tokens(seg);
                (0..=hay.len() - seg.len).find(|&at| {
                    *steps += 1;
                    tokens.iter().zip(&hay[at..]).all(|(t, &b)| t.matches(b))
                })
            }
            Finder::ShiftAnd { words, table } => {
                // Bit i of the state: tokens 0..=i match the bytes ending here.
                let mut state = vec![0u64; *words];
                let top = (seg.len - 1) / 64;
                let top_bit = 1u64 << ((seg.len - 1) % 64);
                for (i, &b) in hay.iter().enumerate() {
                    *steps += *words as u64;
                    let mask = &table[usize::from(b) * words..][..*words];
                    let mut carry = 1u64;
                    for (word, m) in state.iter_mut().zip(mask) {
                        let next_carry = *word >> 63;
                        *word = ((*word << 1) | carry) & m;
                        carry = next_carry;
                    }
                    if state[top] & top_bit != 0 {
                        return Some(i + 1 - seg.len);
                    }
                }
                None
            }
        }
    }
}

/// The segments of `tokens` (the runs between stars), each with its finder.
fn split(tokens: &[Token]) -> Box<[Segment]> {
    let mut segments = Vec::new();
    let mut start = 0;
    for run in tokens.split(|t| *t == Token::Star) {
        if !run.is_empty() {
            segments.push(Segment { start, len: run.len(), find: finder(run) });
        }
        start += run.len() + 1;
    }
    segments.into_boxed_slice()
}

fn finder(run: &[Token]) -> Finder {
    let literal: Option<Vec<u8>> = run
        .iter()
        .map(|t| match t {
            Token::Byte(b) => Some(*b),
            _ => None,
        })
        .collect();
    if let Some(bytes) = literal {
        return Finder::Literal(Box::new(memchr::memmem::Finder::new(&bytes).into_owned()));
    }
    if run.len() <= NAIVE_MAX {
        return Finder::Short;
    }
    let words = run.len().div_ceil(64);
    let mut table = vec![0u64; 256 * words].into_boxed_slice();
    for (i, token) in run.iter().enumerate() {
        for b in 0..=255u8 {
            if token.matches(b) {
                table[usize::from(b) * words + i / 64] |= 1 << (i % 64);
            }
        }
    }
    Finder::ShiftAnd { words, table }
}

/// Escapes every glob metacharacter in `text`, so that the result, used as a
/// pattern, matches exactly `text` (and, followed by `*`, every key that starts
/// with it).
///
/// ```
/// use pepperpy_caching::{Pattern, escape_pattern};
/// let p = Pattern::new(&format!("{}*", escape_pattern("a*[b]")))?;
/// assert!(p.matches("a*[b]:1"));
/// assert!(!p.matches("aXb:1"));
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
pub fn escape_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        Pattern::compile(p).matches(k)
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "use"));
        assert!(m("*:1", "user:1"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("a**b", "ab"));
        assert!(!m("a*?", "a"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed ranges are swapped");
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[\\]]", "]"));
        assert!(!m("[]", "]"), "an empty class matches nothing");
        assert!(m("[^]", "x"), "a negated empty class matches anything");
        assert!(m("a[bc", "ab"), "an unclosed class runs to the end");
        assert!(m("a[bc", "ac"));
        assert!(!m("a[", "ab"), "a trailing [ matches nothing");
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "aXb"));
        assert!(m("a\\?", "a?"));
        assert!(m("a\\", "a\\"), "a trailing backslash is literal");
        assert!(m("\\[x]", "[x]"));
    }

    #[test]
    fn bytes_not_characters() {
        assert!(m("caf?", "cafe"));
        assert!(!m("caf?", "café"), "é is two bytes");
        assert!(m("caf??", "café"));
    }

    #[test]
    fn empty_key_and_empty_pattern() {
        assert!(!m("*", ""), "Redis matches an empty string only with an empty pattern");
        assert!(m("", ""));
        assert!(matches!(Pattern::new(""), Err(CacheError::Pattern { .. })));
    }

    #[test]
    fn over_long_patterns_are_rejected() {
        let at_limit = "a".repeat(MAX_PATTERN_LEN);
        assert!(Pattern::new(&at_limit).is_ok());
        let over = "a".repeat(MAX_PATTERN_LEN + 1);
        match Pattern::new(&over) {
            Err(CacheError::Pattern { reason, .. }) => assert!(reason.contains("1025 bytes"), "{reason}"),
            other => panic!("expected a pattern error, got {other:?}"),
        }
    }

    #[test]
    fn escape_round_trips_every_metacharacter() {
        for text in ["*", "?", "[", "]", "\\", "a*b?c[d]e\\f", "plain", "ünï*cödé"] {
            let p = Pattern::compile(&escape_pattern(text));
            assert!(p.matches(text), "{text}");
            let p = Pattern::compile(&format!("{}*", escape_pattern(text)));
            assert!(p.matches(&format!("{text}tail")), "{text}");
            assert!(!p.matches(&format!("x{text}")), "{text}");
        }
    }

    /// The cost bound of the module docs, in steps: each key byte examined
    /// at most once per segment kind plus the shift-and's state words, and
    /// the pinned segments compared once.
    fn bound(p: &Pattern, key: &[u8]) -> u64 {
        let words = p
            .segments
            .iter()
            .map(|s| match &s.find {
                Finder::ShiftAnd { words, .. } => *words as u64,
                Finder::Short => NAIVE_MAX as u64,
                Finder::Literal(_) => 1,
            })
            .max()
            .unwrap_or(1);
        (key.len() as u64 + 1) * words + p.tokens.len() as u64
    }

    /// The CVE-2022-36021 and CVE-2024-31228 shapes, and the issue's
    /// `"*" + "a" x 1022 + "b"` against 8 KiB keys: exponential for a
    /// recursive matcher, quadratic for a single-backtrack one, linear here
    /// (checked by a step count, never by wall time).
    #[test]
    fn pathological_patterns_cost_linear_steps() {
        let key_a = "a".repeat(50_000);
        let key_8k = "a".repeat(MAX_KEY_LEN_FOR_TESTS);
        let cases = [
            // 50,000 `?` need 50,000 bytes: one byte fewer and it fails.
            ("*?".repeat(50_000), key_a.clone(), true),
            ("*?".repeat(50_000), "a".repeat(49_999), false),
            (format!("{}b", "a*".repeat(1_000)), key_a.clone(), false),
            (format!("{}b", "*a".repeat(25_000)), key_a.clone(), false),
            (format!("{}[b]", "*[a]".repeat(2_000)), key_a.clone(), false),
            ("*".repeat(100_000) + "b", key_a.clone(), false),
            (format!("*{}b", "a".repeat(1022)), key_8k.clone(), false),
            (format!("*{}b*", "a".repeat(1022)), key_8k.clone(), false),
            (format!("*{}*b", "a".repeat(1022)), key_8k.clone(), false),
            (format!("*{}", "?a".repeat(511)), key_8k.clone(), true),
            (format!("*{}b", "?a".repeat(511)), key_8k.clone(), false),
            (format!("*{}b*", "[a]".repeat(300)), key_8k.clone(), false),
            (format!("*{}b*", "a?".repeat(8)), key_8k.clone(), false),
            (format!("*{}", "a".repeat(1023)), key_8k.clone(), true),
        ];
        for (pattern, key, expected) in cases {
            let compiled = Pattern::compile(&pattern);
            let mut steps = 0;
            let matched = compiled.matches_counting(key.as_bytes(), &mut steps);
            assert_eq!(matched, expected, "{}...", &pattern[..20]);
            let bound = bound(&compiled, key.as_bytes());
            assert!(steps <= bound, "{steps} steps > bound {bound} for {}...", &pattern[..20]);
        }
    }

    const MAX_KEY_LEN_FOR_TESTS: usize = crate::key::MAX_KEY_LEN;

    #[test]
    fn segments_are_found_leftmost_and_pinned_at_the_ends() {
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"), "the two pinned segments may not overlap");
        assert!(m("*ab*ab*", "abab"));
        assert!(!m("*ab*ab*", "aba"));
        assert!(m("x*?b?*y", "xaabay"));
        let long = "?".repeat(70) + "b";
        assert!(m(&format!("*{long}*"), &("a".repeat(100) + "b")));
        assert!(!m(&format!("*{long}*"), &("a".repeat(69) + "b")));
        assert!(m(&format!("*{long}"), &("a".repeat(200) + "b")));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(Pattern::compile("user:*").literal_prefix(), b"user:");
        assert_eq!(Pattern::compile("a\\*b").literal_prefix(), b"a*b", "an escaped star is plain");
        assert_eq!(Pattern::compile(r"a\\*b").literal_prefix(), b"a\\", "an escaped backslash too");
        assert_eq!(Pattern::compile("ab?c").literal_prefix(), b"ab");
        assert_eq!(Pattern::compile("[a]bc").literal_prefix(), b"");
        assert_eq!(Pattern::compile("*").literal_prefix(), b"");
        assert_eq!(Pattern::compile("abc").literal_prefix(), b"abc");
    }
}

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
//! matcher never recurses or backtracks more than once: it compiles the pattern
//! to tokens and walks key and pattern with a single saved star position, so a
//! match costs at most (tokens + 1) x (key bytes + 1) steps whatever the pattern.
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
}

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
        Pattern { source: pattern.into(), tokens: tokens.into_boxed_slice() }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &str) -> bool {
        self.matches_counting(key.as_bytes(), &mut 0)
    }

    /// The matcher, counting its loop iterations into `steps`.
    fn matches_counting(&self, key: &[u8], steps: &mut u64) -> bool {
        if key.is_empty() {
            // Redis matches an empty string only against an empty pattern.
            return self.tokens.is_empty();
        }
        let tokens = &self.tokens;
        let (mut t, mut s) = (0usize, 0usize);
        // The latest star: its token index and the key position it resumes at.
        // Earlier stars never need revisiting: anything they could absorb, the
        // latest star can absorb too.
        let mut star: Option<(usize, usize)> = None;
        loop {
            *steps += 1;
            if let Some(token) = tokens.get(t) {
                if *token == Token::Star {
                    star = Some((t, s));
                    t += 1;
                    continue;
                }
                if s < key.len() && token.matches(key[s]) {
                    t += 1;
                    s += 1;
                    continue;
                }
            } else if s == key.len() {
                return true;
            }
            match star {
                Some((star_t, star_s)) if star_s < key.len() => {
                    star = Some((star_t, star_s + 1));
                    t = star_t + 1;
                    s = star_s + 1;
                }
                _ => return false,
            }
        }
    }
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

    /// The CVE-2022-36021 and CVE-2024-31228 shapes: exponential for a
    /// recursive matcher, bounded here by a step count, never by wall time.
    #[test]
    fn pathological_patterns_finish_within_the_step_bound() {
        let key_a = "a".repeat(50_000);
        let cases = [
            // 50,000 `?` need 50,000 bytes: one byte fewer and it fails.
            ("*?".repeat(50_000), key_a.clone(), true),
            ("*?".repeat(50_000), "a".repeat(49_999), false),
            (format!("{}b", "a*".repeat(1_000)), key_a.clone(), false),
            (format!("{}b", "*a".repeat(25_000)), key_a.clone(), false),
            (format!("{}[b]", "*[a]".repeat(2_000)), key_a.clone(), false),
            ("*".repeat(100_000) + "b", key_a.clone(), false),
        ];
        for (pattern, key, expected) in cases {
            let compiled = Pattern::compile(&pattern);
            let tokens = compiled.tokens.len() as u64;
            let bytes = key.len() as u64;
            let mut steps = 0;
            let matched = compiled.matches_counting(key.as_bytes(), &mut steps);
            assert_eq!(matched, expected, "{}...", &pattern[..20]);
            let bound = (tokens + 1) * (bytes + 1);
            assert!(steps <= bound, "{steps} steps > bound {bound}");
            // In practice these shapes are linear: far below the quadratic bound.
            assert!(steps <= 4 * (tokens + bytes) + 4, "{steps} steps for {tokens} tokens, {bytes} bytes");
        }
    }

    #[test]
    fn worst_case_is_quadratic_not_exponential() {
        // `*aaaa...ab` against `aaaa...a` is the quadratic worst case of a
        // single-backtrack matcher: the literal run is retried at each offset.
        let pattern = format!("*{}b", "a".repeat(200));
        let key = "a".repeat(2_000);
        let compiled = Pattern::compile(&pattern);
        let mut steps = 0;
        assert!(!compiled.matches_counting(key.as_bytes(), &mut steps));
        let bound = (compiled.tokens.len() as u64 + 1) * (key.len() as u64 + 1);
        assert!(steps <= bound, "{steps} > {bound}");
    }
}

//! Tags: the rules every store shares for the tags of an entry
//! ([`SetOptions::tags`](crate::SetOptions::tags)) and for the tags of an
//! `invalidate_tags` call, checked before anything changes.
//!
//! An entry carries at most [`MAX_TAGS`] tags, each a non-empty string of at
//! most [`MAX_TAG_LEN`] bytes of UTF-8, with no tag given twice. A call that
//! breaks a rule fails with [`CacheError::Policy`] (an entry's options that
//! make no sense, as a zero TTL) naming the tag, and changes nothing.

use crate::errors::{CacheError, Result, shown};

/// The most tags one entry may carry.
pub const MAX_TAGS: usize = 32;

/// The longest tag accepted, in bytes of UTF-8.
pub const MAX_TAG_LEN: usize = 256;

/// The most tags one `invalidate_tags` call may name (duplicates included).
pub const MAX_INVALIDATE_TAGS: usize = 1024;

/// Checks one tag: non-empty, at most [`MAX_TAG_LEN`] bytes.
fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        return Err(CacheError::Policy("a tag must not be empty".into()));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(CacheError::Policy(format!(
            "the tag {} is {} bytes long, more than the {MAX_TAG_LEN} a tag may have",
            shown(tag),
            tag.len()
        )));
    }
    Ok(())
}

/// Checks the tags of an entry: at most [`MAX_TAGS`], each valid, none twice.
pub(crate) fn check_entry_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(CacheError::Policy(format!("an entry carries at most {MAX_TAGS} tags, {} were given", tags.len())));
    }
    for (i, tag) in tags.iter().enumerate() {
        check_tag(tag)?;
        if tags[..i].contains(tag) {
            return Err(CacheError::Policy(format!("the tag {} is given twice", shown(tag))));
        }
    }
    Ok(())
}

/// Checks the tags of an `invalidate_tags` call: at most
/// [`MAX_INVALIDATE_TAGS`], each valid (a tag named twice counts once).
pub(crate) fn check_invalidate_tags<S: AsRef<str>>(tags: &[S]) -> Result<()> {
    if tags.len() > MAX_INVALIDATE_TAGS {
        return Err(CacheError::Policy(format!(
            "invalidate_tags takes at most {MAX_INVALIDATE_TAGS} tags, {} were given",
            tags.len()
        )));
    }
    tags.iter().try_for_each(|tag| check_tag(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn entry_tags_follow_the_rules() {
        assert!(check_entry_tags(&[]).is_ok());
        assert!(check_entry_tags(&strings(&["user:1", "team:7"])).is_ok());
        let at_limit = "t".repeat(MAX_TAG_LEN);
        assert!(check_entry_tags(std::slice::from_ref(&at_limit)).is_ok());
        for bad in [strings(&[""]), vec![format!("{at_limit}x")], strings(&["a", "b", "a"])] {
            assert!(matches!(check_entry_tags(&bad), Err(CacheError::Policy(_))), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| i.to_string()).collect();
        assert!(check_entry_tags(&many[..MAX_TAGS]).is_ok());
        let err = check_entry_tags(&many).unwrap_err().to_string();
        assert!(err.contains(&MAX_TAGS.to_string()), "{err}");
        let long = check_entry_tags(&["é".repeat(300)]).unwrap_err().to_string();
        assert!(long.contains("600 bytes"), "the message names the length: {long}");
    }

    #[test]
    fn invalidation_tags_follow_the_rules() {
        assert!(check_invalidate_tags::<&str>(&[]).is_ok());
        assert!(check_invalidate_tags(&["a", "a"]).is_ok(), "a tag named twice counts once");
        assert!(check_invalidate_tags(&["a", ""]).is_err());
        let too_many = vec!["a"; MAX_INVALIDATE_TAGS + 1];
        assert!(check_invalidate_tags(&too_many).is_err());
        assert!(check_invalidate_tags(&too_many[1..]).is_ok());
    }
}

//! The Lua scripts of `remote/scripts.rs` (their texts and composition live
//! there, shared with the JS store) as `redis::Script`s, with their SHA1s
//! computed once.

use redis::Script;

use crate::remote::scripts::source;
pub(super) use crate::remote::scripts::{SAMPLE_EVERY, UNLOCK, UNLOCK_LOAD};

/// The scripts the store sends with `EVALSHA`.
pub(super) struct Scripts {
    pub set_bounded: Script,
    pub get_lru: Script,
    pub adopt: Script,
    pub size_bounded: Script,
    pub delete: Script,
    pub replace_if_unchanged: Script,
    pub get_or_lock: Script,
    pub store_loaded: Script,
    pub store_loaded_bounded: Script,
    pub read_fresh: Script,
    pub refresh_failed: Script,
    pub set_idle: Script,
    pub get_idle: Script,
    pub touch_idle: Script,
    pub get_lru_many: Script,
    pub set_bounded_many: Script,
    pub set_returning: Script,
    pub set_bounded_returning: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let script = |name: &str| Script::new(&source(name));
        Scripts {
            set_bounded: script("set_bounded"),
            get_lru: script("get_lru"),
            adopt: script("adopt"),
            size_bounded: script("size_bounded"),
            delete: script("delete"),
            replace_if_unchanged: script("replace_if_unchanged"),
            get_or_lock: script("get_or_lock"),
            store_loaded: script("store_loaded"),
            store_loaded_bounded: script("store_loaded_bounded"),
            read_fresh: script("read_fresh"),
            refresh_failed: script("refresh_failed"),
            set_idle: script("set_idle"),
            get_idle: script("get_idle"),
            touch_idle: script("touch_idle"),
            get_lru_many: script("get_lru_many"),
            set_bounded_many: script("set_bounded_many"),
            set_returning: script("set_returning"),
            set_bounded_returning: script("set_bounded_returning"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::remote::scripts::table;

    #[test]
    fn the_core_hashes_every_script_as_redis_rs_does() {
        for script in table() {
            assert_eq!(redis::Script::new(&script.source).get_hash(), script.sha1, "{}", script.name);
        }
    }
}

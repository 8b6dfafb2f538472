//! The Lua scripts that keep a bounded store's indexes in step with its
//! entries, and those of the `get_or_set` load lock, each one atomic and one
//! round trip (EVALSHA, falling back to EVAL after a server restart has
//! emptied the script cache).
//!
//! Every key a script touches directly is passed in `KEYS`; the only others are
//! the entries it reclaims or evicts, which are members of the indexes and
//! share the prefix (and so, with a `{hash tag}` prefix, the cluster slot).
//! See the parent module's docs for the layout these scripts maintain.

use redis::Script;

/// Sets one entry under a capacity: reclaims up to 8 expired entries, then,
/// if the key is new and the store is full, reclaims one more expired entry
/// or else evicts the least recently used (LRU) or soonest-to-expire (TTL)
/// entry; writes the entry with its TTL and updates the indexes.
///
/// KEYS: entry, recency index, expiry index.
/// ARGV: stored bytes, TTL in ms (0: none), max_size, "1" for LRU / "0" for TTL.
/// Returns `{expired, evicted}`.
const SET_BOUNDED: &str = r"
local entry, recency, expiry = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[2])
local max_size = tonumber(ARGV[3])
local lru = ARGV[4] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- The index that lists every entry: recency under LRU, expiry under TTL
-- (where every entry has a TTL).
local members = lru and recency or expiry
local expired, evicted = 0, 0

local function forget(member)
  if lru then redis.call('ZREM', recency, member) end
  redis.call('ZREM', expiry, member)
end

local function reclaim(limit)
  local stale = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(stale) do
    redis.call('UNLINK', member)
    forget(member)
  end
  return #stale
end

expired = reclaim(8)
if redis.call('ZSCORE', members, entry) then
  local at = redis.call('ZSCORE', expiry, entry)
  if at and tonumber(at) <= now then expired = expired + 1 end
elseif redis.call('ZCARD', members) >= max_size then
  local reclaimed = reclaim(1)
  if reclaimed > 0 then
    expired = expired + reclaimed
  else
    local victim = redis.call('ZRANGE', members, 0, 0)[1]
    if victim then
      -- A member whose entry is gone was removed behind our back (Redis
      -- expiry a millisecond early, maxmemory, a manual DEL): not an eviction.
      if redis.call('UNLINK', victim) == 1 then evicted = 1 else expired = expired + 1 end
      forget(victim)
    end
  end
end

if ttl > 0 then
  redis.call('SET', entry, ARGV[1], 'PX', ARGV[2])
  redis.call('ZADD', expiry, now + ttl, entry)
else
  redis.call('SET', entry, ARGV[1])
  redis.call('ZREM', expiry, entry)
end
if lru then
  local top = redis.call('ZRANGE', recency, -1, -1, 'WITHSCORES')
  redis.call('ZADD', recency, (tonumber(top[2]) or 0) + 1, entry)
end
return {expired, evicted}
";

/// Reads an entry under LRU and makes it the most recently used.
///
/// KEYS: entry, recency index, expiry index.
/// Returns the stored bytes, or on a miss the number of index members
/// dropped because Redis had expired the entry (0 or 1).
const GET_LRU: &str = r"
local value = redis.call('GET', KEYS[1])
if value then
  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if top[1] ~= KEYS[1] then
    redis.call('ZADD', KEYS[2], 'XX', (tonumber(top[2]) or 0) + 1, KEYS[1])
  end
  return value
end
local stale = redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return stale
";

/// Deletes entries and their index members.
///
/// KEYS: recency index, expiry index, then the entries.
/// Returns how many entries existed.
const DELETE_BOUNDED: &str = r"
if #KEYS < 3 then return 0 end
local removed = redis.call('UNLINK', unpack(KEYS, 3))
redis.call('ZREM', KEYS[1], unpack(KEYS, 3))
redis.call('ZREM', KEYS[2], unpack(KEYS, 3))
return removed
";

/// Replaces an entry's stored bytes if they are still what the caller read,
/// keeping its TTL: the compare-and-set step of `update_metadata`.
///
/// KEYS: entry. ARGV: the bytes read, the new bytes.
/// Returns 1 if written, 0 if the entry changed or vanished meanwhile.
const REPLACE_IF_UNCHANGED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
";

/// One step of `get_or_set` after a miss: the entry if it is there by now,
/// else the load lock if it is free. Atomic, so a caller that gets the lock
/// knows no other owner stored the value before it (the owner's re-check).
///
/// KEYS: entry, lock. ARGV: token, lease in ms.
/// Returns the stored bytes, 1 if the lock is now the caller's, 0 if another
/// owner holds it.
const GET_OR_LOCK: &str = r"
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Releases a load lock if it is still the caller's: a lock whose lease ran
/// out may have been taken by another caller since, and is theirs to release.
///
/// KEYS: lock. ARGV: token. Returns 1 if released, 0 if not the caller's.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The scripts, with their SHA1s computed once.
pub(super) struct Scripts {
    pub set_bounded: Script,
    pub get_lru: Script,
    pub delete_bounded: Script,
    pub replace_if_unchanged: Script,
    pub get_or_lock: Script,
    pub unlock: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            set_bounded: Script::new(SET_BOUNDED),
            get_lru: Script::new(GET_LRU),
            delete_bounded: Script::new(DELETE_BOUNDED),
            replace_if_unchanged: Script::new(REPLACE_IF_UNCHANGED),
            get_or_lock: Script::new(GET_OR_LOCK),
            unlock: Script::new(UNLOCK),
        }
    }
}

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

/// One bounded `set` in this many checks two random index members for
/// entries Redis removed behind the store's back.
pub(super) const SAMPLE_EVERY: u64 = 8;

/// Sets one entry under a capacity.
///
/// First it heals the index: if the members index has lost its sentinel
/// member `''` (no entry key is empty), the index is new or Redis dropped it
/// (maxmemory eviction, a manual DEL), and the caller is told to rebuild it;
/// when asked (one `set` in [`SAMPLE_EVERY`] per instance), two random
/// members are checked and dropped if their entry is gone.
/// Then it reclaims up to 8 expired entries and, if the key is new and the
/// store is full, one more expired entry or else the least recently used
/// (LRU) or soonest-to-expire (TTL) entry, skipping up to 16 members whose
/// entry Redis removed behind our back; then writes the entry with its TTL
/// and updates the indexes.
///
/// Under LRU the sentinel's score is the recency counter: `ZINCRBY` gives
/// the next one in O(log n), where the highest member would cost a ZRANGE.
/// Under TTL the sentinel's score is `+inf`, so it is never due and never the
/// soonest to expire.
///
/// KEYS: entry, recency index, expiry index.
/// ARGV: stored bytes, TTL in ms (0: none), max_size, "1" for LRU / "0" for
/// TTL, "1" to check random members.
/// Returns `{expired, evicted, lost}` (`lost`: 1 if the index must be rebuilt).
const SET_BOUNDED: &str = r"
local entry, recency, expiry = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[2])
local max_size = tonumber(ARGV[3])
local lru = ARGV[4] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local members = lru and recency or expiry
local expired, evicted, lost = 0, 0, 0

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

-- The sentinel: under LRU taking the next counter value creates it if it was
-- missing (the counter starts again at 1); under TTL it is looked up.
local score
if lru then
  score = redis.call('ZINCRBY', recency, 1, '')
  if tonumber(score) == 1 then lost = 1 end
elseif not redis.call('ZSCORE', expiry, '') then
  lost = 1
end
-- Whether the sentinel is counted in ZCARD now.
local sentinel = (lru or lost == 0) and 1 or 0
if ARGV[5] == '1' then
  for _, member in ipairs(redis.call('ZRANDMEMBER', members, 2)) do
    if member ~= '' and member ~= entry and redis.call('EXISTS', member) == 0 then
      forget(member)
      expired = expired + 1
    end
  end
end
expired = expired + reclaim(8)
if redis.call('ZSCORE', members, entry) then
  local at = redis.call('ZSCORE', expiry, entry)
  if at and tonumber(at) <= now then expired = expired + 1 end
elseif redis.call('ZCARD', members) - sentinel >= max_size then
  local reclaimed = reclaim(1)
  if reclaimed > 0 then
    expired = expired + reclaimed
  else
    for _ = 1, 16 do
      -- A vanished entry's member made room: nothing real need go.
      if _ > 1 and redis.call('ZCARD', members) - sentinel < max_size then break end
      local lowest = redis.call('ZRANGE', members, 0, 1)
      local victim = lowest[1] == '' and lowest[2] or lowest[1]
      if not victim then break end
      forget(victim)
      if redis.call('UNLINK', victim) == 1 then
        evicted = 1
        break
      end
      -- Its entry was removed behind our back: not an eviction, look further.
      expired = expired + 1
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
  redis.call('ZADD', recency, score, entry)
elseif lost == 1 then
  redis.call('ZADD', expiry, 'inf', '')
end
return {expired, evicted, lost}
";

/// Reads an entry under LRU and makes it the most recently used: the next
/// value of the counter (the sentinel's score), taken only if the index is
/// there (`XX`), so a lost index is left for the next `set` to notice.
///
/// KEYS: entry, recency index, expiry index.
/// Returns the stored bytes, or on a miss the number of index members
/// dropped because Redis had expired or removed the entry (0 or 1).
const GET_LRU: &str = r"
local value = redis.call('GET', KEYS[1])
if value then
  local score = redis.call('ZADD', KEYS[2], 'XX', 'INCR', 1, '')
  if score then redis.call('ZADD', KEYS[2], 'XX', score, KEYS[1]) end
  return value
end
local stale = redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return stale
";

/// Adopts entries the index does not list (one SCAN page of a rebuild after
/// the index was lost), then evicts down to the capacity. Adopted entries get
/// recency scores below every listed one (least recently used first) and
/// their remaining TTL in the expiry index.
///
/// KEYS: recency index, expiry index, then the entries of the page.
/// ARGV: max_size, "1" for LRU / "0" for TTL.
/// Returns `{adopted, evicted, expired, lost}`; `lost` is 1 (and nothing
/// done) if the index was lost again since the rebuild began.
const ADOPT: &str = r"
local recency, expiry = KEYS[1], KEYS[2]
local max_size = tonumber(ARGV[1])
local lru = ARGV[2] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local members = lru and recency or expiry
local adopted, evicted, expired = 0, 0, 0

local function forget(member)
  if lru then redis.call('ZREM', recency, member) end
  redis.call('ZREM', expiry, member)
end

-- Lost again since the rebuild began: the pages adopted so far went with
-- it. Stop; the next set finds the sentinel missing and starts over.
if not redis.call('ZSCORE', members, '') then return {0, 0, 0, 1} end
local low = 0
if lru then
  local first = redis.call('ZRANGE', recency, 0, 0, 'WITHSCORES')
  low = math.min(0, tonumber(first[2]) or 0)
end
for i = 3, #KEYS do
  local key = KEYS[i]
  if not redis.call('ZSCORE', members, key) then
    local pttl = redis.call('PTTL', key)
    if pttl ~= -2 then
      if lru then
        low = low - 1
        redis.call('ZADD', recency, low, key)
      end
      if pttl > 0 then
        redis.call('ZADD', expiry, now + pttl, key)
      elseif not lru then
        -- No TTL under a TTL policy (written by someone else): last to go.
        redis.call('ZADD', expiry, 9e15, key)
      end
      adopted = adopted + 1
    end
  end
end
local budget = #KEYS + 16
while redis.call('ZCARD', members) - 1 > max_size and budget > 0 do
  budget = budget - 1
  local lowest = redis.call('ZRANGE', members, 0, 1)
  local victim = lowest[1] == '' and lowest[2] or lowest[1]
  if not victim then break end
  forget(victim)
  if redis.call('UNLINK', victim) == 1 then evicted = evicted + 1 else expired = expired + 1 end
end
return {adopted, evicted, expired, 0}
";

/// How many entries a bounded store holds by its index: members but the
/// sentinel, less those whose TTL has passed. -1 if the index is missing
/// (new or lost): the caller counts by walking the prefix instead.
///
/// KEYS: members index, expiry index.
const SIZE_BOUNDED: &str = r"
if not redis.call('ZSCORE', KEYS[1], '') then return -1 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZCARD', KEYS[1]) - 1 - redis.call('ZCOUNT', KEYS[2], '-inf', now)
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
    pub adopt: Script,
    pub size_bounded: Script,
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
            adopt: Script::new(ADOPT),
            size_bounded: Script::new(SIZE_BOUNDED),
            delete_bounded: Script::new(DELETE_BOUNDED),
            replace_if_unchanged: Script::new(REPLACE_IF_UNCHANGED),
            get_or_lock: Script::new(GET_OR_LOCK),
            unlock: Script::new(UNLOCK),
        }
    }
}

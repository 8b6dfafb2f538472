//! The Lua scripts that keep a bounded store's indexes in step with its
//! entries, and those of `get_or_set` loads and `get_or_refresh` refreshes,
//! each one atomic and one round trip (EVALSHA, falling back to EVAL after a
//! server restart has emptied the script cache).
//!
//! Every key a script touches directly is passed in `KEYS`; the only others are
//! the entries it reclaims or evicts, which are members of the indexes and
//! share the prefix (and so, with a `{hash tag}` prefix, the cluster slot).
//! See `keyspace` for the layout these scripts maintain, and `format` for
//! the documents they read and write.
//!
//! Only texts here, no I/O: [`TABLE`] composes each script the stores send
//! from its parts, [`source`] and [`table`] give them (with their SHA1s for
//! `EVALSHA`) to the Rust store (`stores/redis/scripts.rs` wraps them in
//! `redis::Script`) and to the JS one (the `pepperpy-caching/redis` wasm).

/// One bounded `set` in this many checks two random index members for
/// entries Redis removed behind the store's back.
pub(crate) const SAMPLE_EVERY: u64 = 8;

/// Sets one entry under a capacity: the body shared by [`SET_BOUNDED_CALL`] and
/// [`STORE_LOADED_BOUNDED_CALL`], a Lua function of the keys, the bytes, the TTL
/// and the caller's options.
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
/// `set_bounded(entry, recency, expiry, doc, ttl_ms ('0': none), max_size,
/// lru ('1'/'0'), sample ('1' to check random members), now_ms, idle_ms
/// ('0' or nil: none))` returns `expired, evicted, lost` (`lost`: 1 if the
/// index must be rebuilt). An entry with an idle time gets its header
/// ([`IDLE_FN`]) and expires at the sooner of its TTL and its idle time.
///
/// A member the expiry index lists as due whose entry lives on (a read
/// moved its idle deadline where the index was not told: `get_or_refresh`)
/// is filed again under its real deadline instead of being reclaimed.
const SET_BOUNDED_FN: &str = r"
local function set_bounded(entry, recency, expiry, doc, ttl_arg, max_arg, lru_arg, sample, now, idle_arg)
doc, ttl_arg = with_idle(doc, tonumber(idle_arg or '0') or 0, ttl_arg, now)
local ttl = tonumber(ttl_arg)
local max_size = tonumber(max_arg)
local lru = lru_arg == '1'
local members = lru and recency or expiry
local expired, evicted, lost = 0, 0, 0

local function forget(member)
  forget_member(recency, expiry, lru, member)
end

local function reclaim(limit)
  local stale = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, member in ipairs(stale) do
    local pttl = redis.call('PTTL', member)
    if pttl > 0 then
      redis.call('ZADD', expiry, now + pttl, member)
    else
      redis.call('UNLINK', member)
      forget(member)
      n = n + 1
    end
  end
  return n
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
if sample == '1' then
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
      local unlinked = evict_lowest(members, recency, expiry, lru)
      if not unlinked then break end
      if unlinked == 1 then
        evicted = 1
        break
      end
      -- Its entry was removed behind our back: not an eviction, look further.
      expired = expired + 1
    end
  end
end

if ttl > 0 then
  redis.call('SET', entry, doc, 'PX', ttl_arg)
  redis.call('ZADD', expiry, now + ttl, entry)
else
  redis.call('SET', entry, doc)
  redis.call('ZREM', expiry, entry)
end
if lru then
  redis.call('ZADD', recency, score, entry)
elseif lost == 1 then
  redis.call('ZADD', expiry, 'inf', '')
end
return expired, evicted, lost
end
";

/// Time-to-idle. An entry with an idle time starts with the header
/// `{"i":<idle ms>,"d":<TTL deadline, ms of Redis's clock; 0: none>,` (after
/// a `get_or_refresh` stamp `{"f":<ms>,` if it has one), written here, where
/// Redis's clock is; entries without one (all of v0.2's) have no header. A
/// read moves its expiry to the sooner of now + idle and the TTL deadline
/// (`touch`), and its member of a bounded store's expiry index with it.
///
/// `idle_doc(doc, idle, ttl, now)`: the document with its header, and its
/// first expiry in ms from now. `with_idle(doc, idle, ttl, now)`: the same
/// for every write, a TTL and an expiry as text ('0': none), and without an
/// idle time (`idle` 0) the document and TTL as they are (`now`: nil for
/// Redis's clock, read only if needed). `set_px(entry, doc, px)`: the
/// `SET`, with `PX` unless `px` is '0'. `touch(entry, doc, expiry)`: moves
/// the expiry of an entry just read as `doc` if it has a header (`expiry`,
/// the expiry index, or nil).
const IDLE_FN: &str = r#"
local function idle_doc(doc, idle, ttl, now)
  local at = 0
  local px = idle
  if ttl > 0 then
    at = now + ttl
    if ttl < idle then px = ttl end
  end
  return '{"i":' .. string.format('%d', idle) .. ',"d":' .. string.format('%d', at) .. ',' .. string.sub(doc, 2), px
end

local function with_idle(doc, idle, ttl, now)
  if idle <= 0 then return doc, ttl end
  local with, px = idle_doc(doc, idle, tonumber(ttl), now or now_ms())
  return with, string.format('%d', px)
end

local function set_px(entry, doc, px)
  if px ~= '0' then
    redis.call('SET', entry, doc, 'PX', px)
  else
    redis.call('SET', entry, doc)
  end
end

local function touch(entry, doc, expiry)
  local i, t = string.match(doc, '^{"i":(%d+),"d":(%d+),')
  if not i then i, t = string.match(doc, '^{"f":%d+,"i":(%d+),"d":(%d+),') end
  if not i then return end
  local at = now_ms() + tonumber(i)
  t = tonumber(t)
  if t > 0 and t < at then at = t end
  redis.call('PEXPIREAT', entry, string.format('%d', at))
  if expiry then redis.call('ZADD', expiry, 'XX', at, entry) end
end
"#;

/// Redis's clock in ms, for the scripts below.
const NOW_FN: &str = r"
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
";

/// A bounded store's index bookkeeping, shared by [`SET_BOUNDED_FN`] and
/// [`ADOPT`]: `forget_member` drops a member from a bucket's indexes;
/// `evict_lowest` unlinks the lowest member of `members` (least recently
/// used, or soonest to expire) and forgets it, returning 1 if its entry
/// existed (an eviction), 0 if Redis had removed it already, nil if the
/// index lists no entry.
const INDEX_FN: &str = r"
-- A table when the caller has a removal listener: evict_lowest appends each
-- victim's key and stored bytes (SET_BOUNDED_RETURNING_CALL returns them).
local evicted_values = false

local function forget_member(recency, expiry, lru, member)
  if lru then redis.call('ZREM', recency, member) end
  redis.call('ZREM', expiry, member)
end

local function evict_lowest(members, recency, expiry, lru)
  local lowest = redis.call('ZRANGE', members, 0, 1)
  local victim = lowest[1] == '' and lowest[2] or lowest[1]
  if not victim then return nil end
  -- UNLINK before forgetting: on a cluster whose slot is migrating, a
  -- victim already moved is not local and UNLINK raises; the script stops
  -- there (Redis does not undo a script's writes), so the index must still
  -- list it.
  if evicted_values then
    local value = redis.pcall('GET', victim)
    if type(value) == 'string' then
      evicted_values[#evicted_values + 1] = victim
      evicted_values[#evicted_values + 1] = value
    end
  end
  local unlinked = redis.call('UNLINK', victim)
  forget_member(recency, expiry, lru, victim)
  return unlinked
end
";

/// A plain `set` under a capacity: [`SET_BOUNDED_FN`].
///
/// KEYS: entry, recency index, expiry index.
/// ARGV: stored bytes, TTL in ms (0: none), max_size, "1" for LRU / "0" for
/// TTL, "1" to check random members, idle time in ms (0: none).
/// Returns `{expired, evicted, lost}`.
const SET_BOUNDED_CALL: &str = r"
return {set_bounded(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_ms(), ARGV[6])}
";

/// The write of an entry without a capacity, the body of the scripts
/// `set_idle` (then `return 1`) and `set_returning` (after [`READ_OLD`],
/// then `return old`) of [`TABLE`]: with an idle time, the header of
/// [`IDLE_FN`] and the sooner of TTL and idle time as the expiry. An idle
/// time of 0 is a plain `SET` (with `PX` if there is a TTL): a batch sends
/// its entries with and without one through `set_idle` alike.
///
/// KEYS: entry. ARGV: stored bytes, TTL in ms (0: none), idle time in ms.
const WRITE_ENTRY: &str = r"
local doc, px = with_idle(ARGV[1], tonumber(ARGV[3] or '0') or 0, ARGV[2], nil)
set_px(KEYS[1], doc, px)
";

/// The head of the scripts that report what a write replaced: the entry's
/// old stored bytes in `old` (false if it had none, or a load's
/// placeholder), read before the write. KEYS[1]: the entry.
const READ_OLD: &str = r"
local old = redis.pcall('GET', KEYS[1])
if type(old) ~= 'string' then old = false end
";

/// A read of an entry that may have an idle time, in one round trip: the
/// read of a store whose policy gives every entry one.
///
/// KEYS: entry, then a bounded store's expiry index.
/// Returns the stored bytes, or nil (a load's placeholder included).
const GET_IDLE: &str = r"
local doc = redis.pcall('GET', KEYS[1])
if type(doc) ~= 'string' then return false end
touch(KEYS[1], doc, KEYS[2])
return doc
";

/// After a plain `GET` found an entry with an idle-time header: moves its
/// expiry if it still starts with that header (a write since then started
/// its own clock; this one may not touch it).
///
/// KEYS: entry, then a bounded store's expiry index. ARGV: the header read.
/// Returns 1 if moved.
const TOUCH_IDLE: &str = r"
local head = ARGV[1]
local doc = redis.pcall('GETRANGE', KEYS[1], 0, #head - 1)
if doc ~= head then return 0 end
touch(KEYS[1], doc, KEYS[2])
return 1
";

/// Whether a load may store its value, and the stamp of a value stored by
/// `get_or_refresh`: shared by the two `STORE_LOADED` scripts.
///
/// A load of a missing key (mode `'p'`) holds the key's placeholder, a hash
/// `{load = token}` in the entry's own Redis key: every write replaces it
/// (SET), deletes it (DEL, UNLINK by invalidate and clear), and its lease
/// ends it, so the load may store only while the placeholder still holds its
/// token. A refresh of a stale entry (mode `'r'`) holds the refresh lock (a
/// string at the lock key) and saw the entry's bytes with the SHA1 `sha`: it
/// may store only while the lock holds its token and the entry still has
/// those bytes (a set, an update, a delete or another refresh changed them).
///
/// An entry stored by `get_or_refresh` starts with `{"f":<fresh until, ms of
/// Redis's clock>,`; plain entries start with `{"v":`.
const STORE_LOADED_FN: &str = r#"
local function may_store(entry, lock, mode, token, sha)
  if mode == 'p' then
    return redis.pcall('HGET', entry, 'load') == token
  end
  if redis.call('GET', lock) ~= token then return false end
  local doc = redis.pcall('GET', entry)
  return type(doc) == 'string' and redis.sha1hex(doc) == sha
end

local function stamped(doc, fresh_for, now)
  if fresh_for == 0 then return doc end
  return '{"f":' .. string.format('%d', now + fresh_for) .. ',' .. string.sub(doc, 2)
end

-- Whether the load may store; refused, a refresh lock that is still ours
-- is released.
local function may_store_or_release(entry, lock, mode, token, sha)
  if may_store(entry, lock, mode, token, sha) then return true end
  if mode == 'r' and redis.call('GET', lock) == token then redis.call('DEL', lock) end
  return false
end
"#;

/// Stores a loaded value without a capacity, if the load may (see
/// [`STORE_LOADED_FN`]).
///
/// KEYS: entry, then the refresh lock (on a cluster in mode 'r' only: a load,
/// mode 'p', declares only its entry there, so that a migrating slot does not
/// refuse it for a lock that does not exist; the caller clears a backoff
/// left in the lock by a separate `DEL`).
/// ARGV: mode ('p' or 'r'), token, sha (mode 'r'), fresh period in ms (0:
/// not from `get_or_refresh`), stored bytes, TTL in ms (0: none), idle time
/// in ms (0: none).
/// Returns `{0, 0, 0, stored}` (stored: 1, or 0 if refused), the shape of
/// [`STORE_LOADED_BOUNDED_CALL`]'s reply.
const STORE_LOADED_CALL: &str = r"
local entry, lock, mode, token = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if not may_store_or_release(entry, lock, mode, token, ARGV[3]) then return {0, 0, 0, 0} end
local fresh_for = tonumber(ARGV[4])
local doc, px = with_idle(ARGV[5], tonumber(ARGV[7] or '0') or 0, ARGV[6], nil)
if fresh_for > 0 then
  doc = stamped(doc, fresh_for, now_ms())
  -- A fresh value: no refresh runs, no backoff stays.
  if lock then redis.call('DEL', lock) end
end
set_px(entry, doc, px)
return {0, 0, 0, 1}
";

/// Stores a loaded value under a capacity, if the load may: the two above
/// together.
///
/// KEYS: entry, recency index, expiry index, then the refresh lock (on a
/// cluster only in mode 'r', as for [`STORE_LOADED_CALL`]).
/// ARGV: mode, token, sha, fresh period in ms, stored bytes, TTL in ms,
/// max_size, "1" for LRU, "1" to check random members, idle time in ms,
/// and "1" for a store with a removal listener.
/// Returns `{expired, evicted, lost, stored}`; with a listener, then the key
/// and stored bytes of each entry it evicted.
const STORE_LOADED_BOUNDED_CALL: &str = r"
local entry, lock, mode, token = KEYS[1], KEYS[4], ARGV[1], ARGV[2]
if not may_store_or_release(entry, lock, mode, token, ARGV[3]) then return {0, 0, 0, 0} end
if ARGV[11] == '1' then evicted_values = {} end
local now = now_ms()
local fresh_for = tonumber(ARGV[4])
local doc, ttl = with_idle(ARGV[5], tonumber(ARGV[10] or '0') or 0, ARGV[6], now)
doc = stamped(doc, fresh_for, now)
if fresh_for > 0 and lock then redis.call('DEL', lock) end
-- SET replaces the placeholder; the index never listed it, so the key counts as new.
local expired, evicted, lost = set_bounded(entry, KEYS[2], KEYS[3], doc, ttl, ARGV[7], ARGV[8], ARGV[9], now)
return {expired, evicted, lost, 1, unpack(evicted_values or {})}
";

/// Reads an entry under LRU and makes it the most recently used: the next
/// value of the counter (the sentinel's score), taken only if the index is
/// there (`XX`), so a lost index is left for the next `set` to notice.
///
/// KEYS: entry, recency index, expiry index.
/// Returns the stored bytes, or on a miss (a load's placeholder included) the number of index members
/// dropped because Redis had expired or removed the entry (0 or 1).
/// An entry with an idle time is touched ([`IDLE_FN`]).
const GET_LRU: &str = r#"
local value = redis.pcall('GET', KEYS[1])
-- A load's placeholder (a hash: WRONGTYPE) is a miss.
if type(value) == 'string' then
  local score = redis.call('ZADD', KEYS[2], 'XX', 'INCR', 1, '')
  if score then redis.call('ZADD', KEYS[2], 'XX', score, KEYS[1]) end
  -- One byte tells a plain entry ({"v":) from one with a header.
  if string.byte(value, 3) ~= 118 then touch(KEYS[1], value, KEYS[3]) end
  return value
end
local stale = redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return stale
"#;

/// [`GET_LRU`] over many entries of one bucket, in one call: its text
/// becomes a function of its `KEYS` and `ARGV`, run for each entry.
///
/// KEYS: recency index, expiry index, then the entries.
/// ARGV: as [`GET_LRU`]'s, the same for every entry.
/// Returns `{dropped, value...}`: the members dropped in all (the sum of
/// [`GET_LRU`]'s counts), then each entry's stored bytes, or nil for a miss.
const GET_LRU_MANY_HEAD: &str = "local function get_lru(KEYS, ARGV)\n";
const GET_LRU_MANY_CALL: &str = r"
end
local out, dropped = {0}, 0
for i = 3, #KEYS do
  local got = get_lru({KEYS[i], KEYS[1], KEYS[2]}, ARGV)
  if type(got) == 'string' then
    out[i - 1] = got
  else
    dropped = dropped + got
    out[i - 1] = false
  end
end
out[1] = dropped
return out
";

/// [`SET_BOUNDED_CALL`] over many entries of one bucket, in one call, in
/// the order given: [`SET_BOUNDED_FN`] for each.
///
/// KEYS: recency index, expiry index, then the entries.
/// ARGV: max_size, "1" for LRU / "0" for TTL, a flag per entry ("1" to
/// check random members), then for each entry its stored bytes, TTL in ms
/// (0: none) and idle time in ms (0: none).
/// Returns `{expired, evicted, lost}`, summed (lost: 1 if any found it lost).
const SET_BOUNDED_MANY_CALL: &str = r"
local now = now_ms()
local expired, evicted, lost = 0, 0, 0
for i = 3, #KEYS do
  local at = 4 + 3 * (i - 3)
  local sample = string.sub(ARGV[3], i - 2, i - 2)
  local e, v, l =
    set_bounded(KEYS[i], KEYS[1], KEYS[2], ARGV[at], ARGV[at + 1], ARGV[1], ARGV[2], sample, now, ARGV[at + 2])
  expired, evicted = expired + e, evicted + v
  if l == 1 then lost = 1 end
end
return {expired, evicted, lost}
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
local now = now_ms()
local members = lru and recency or expiry
local adopted, evicted, expired = 0, 0, 0

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
  -- Entries only (strings): not a load's placeholder (a hash), which a
  -- rebuild that lists a slot's keys (no SCAN TYPE filter) also meets.
  if not redis.call('ZSCORE', members, key) and redis.call('TYPE', key)['ok'] == 'string' then
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
  local unlinked = evict_lowest(members, recency, expiry, lru)
  if not unlinked then break end
  if unlinked == 1 then evicted = evicted + 1 else expired = expired + 1 end
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
return redis.call('ZCARD', KEYS[1]) - 1 - redis.call('ZCOUNT', KEYS[2], '-inf', now_ms())
";

/// Deletes entries (and a load's placeholder, which cancels the load) and,
/// for a bounded store, their index members.
///
/// KEYS: for a bounded store the recency and expiry indexes, then the
/// entries (an unbounded store declares only the entries: on a cluster, a
/// declared key that does not exist makes Redis refuse the script with
/// TRYAGAIN while the slot migrates).
/// ARGV: "1" if the store is bounded; "1" if it has a removal listener.
/// Returns how many entries existed (placeholders are not entries); with a
/// listener, `{removed, key, bytes, key, bytes, ...}`: the stored bytes of
/// each entry it removed as well.
const DELETE: &str = r"
local first = ARGV[1] == '1' and 3 or 1
local returning = ARGV[2] == '1'
local out = {0}
if #KEYS < first then return returning and out or 0 end
for i = first, #KEYS do
  if returning then
    local value = redis.pcall('GET', KEYS[i])
    if type(value) == 'string' then
      out[1] = out[1] + 1
      out[#out + 1] = KEYS[i]
      out[#out + 1] = value
    end
  elseif redis.call('TYPE', KEYS[i])['ok'] == 'string' then
    out[1] = out[1] + 1
  end
end
redis.call('UNLINK', unpack(KEYS, first))
if first == 3 then
  redis.call('ZREM', KEYS[1], unpack(KEYS, 3))
  redis.call('ZREM', KEYS[2], unpack(KEYS, 3))
end
if returning then return out end
return out[1]
";

/// [`SET_BOUNDED_CALL`] for a store with a removal listener, after
/// [`READ_OLD`]: also the entry's old stored bytes (false if none), then
/// the key and stored bytes of each entry it evicted: `{expired, evicted,
/// lost, old, key, bytes, ...}`. ARGV: as [`SET_BOUNDED_CALL`]'s (the idle
/// time included).
const SET_BOUNDED_RETURNING_CALL: &str = r"
evicted_values = {}
local expired, evicted, lost =
  set_bounded(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_ms(), ARGV[6])
return {expired, evicted, lost, old, unpack(evicted_values)}
";

/// Replaces an entry's stored bytes if they are still what the caller read,
/// keeping its TTL: the compare-and-set step of `update_metadata`.
///
/// KEYS: entry. ARGV: the bytes read, the new bytes.
/// Returns 1 if written, 0 if the entry changed or vanished meanwhile.
const REPLACE_IF_UNCHANGED: &str = r"
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
";

/// One step of `get_or_set` after a miss: the entry if it is there by now,
/// else the load's placeholder if nobody holds it. Atomic, so a caller that
/// gets the placeholder knows no other owner stored the value before it (the
/// owner's re-check).
///
/// The placeholder is a hash `{load = token}` at the entry's own Redis key,
/// living for the lease: any write to the key replaces or deletes it, which
/// is how the load learns that its value is out of date ([`STORE_LOADED_FN`]).
///
/// KEYS: entry, then for a tagged load its tag sets (`tags.rs`), which get
/// the entry's key with the placeholder, atomically: an `invalidate_tags`
/// from then on finds the placeholder and deletes it.
/// ARGV: token, lease in ms, and for a tagged load the least TTL of its tag
/// sets in ms.
/// Returns the stored bytes, 1 if the placeholder is now the caller's, 0 if
/// another load holds it, -1 if the key holds something this store did not
/// write (waiting for it would never end).
const GET_OR_LOCK: &str = r"
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'string' then return value end
-- WRONGTYPE: another load's placeholder, or a value of someone else's.
if value then
  if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HEXISTS', KEYS[1], 'load') == 1 then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], 'load', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 2, #KEYS do
  local pttl = redis.call('PTTL', KEYS[i])
  redis.call('SADD', KEYS[i], KEYS[1])
  if pttl == -2 or (pttl >= 0 and pttl < tonumber(ARGV[3])) then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1
";

/// Removes a load's placeholder if it is still the caller's (its loader
/// failed, or its caller went away): a placeholder whose lease ran out may
/// have been replaced by another load's, or by a value.
///
/// KEYS: entry. ARGV: token. Returns 1 if removed.
pub(crate) const UNLOCK_LOAD: &str = r"
if redis.pcall('HGET', KEYS[1], 'load') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Releases a refresh lock if it is still the caller's: a lock whose lease
/// ran out may have been taken by another caller since, and is theirs to
/// release.
///
/// KEYS: lock. ARGV: token. Returns 1 if released, 0 if not the caller's.
pub(crate) const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The read of `get_or_refresh`: the entry, whether it is fresh, and, if it
/// is stale and no refresh runs or backs off, the refresh lock for the
/// caller. An entry without a `{"f":...` stamp is fresh until it expires.
///
/// The refresh lock at the lock key holds the token of the refresh running,
/// for the lease; after a failed refresh, `backoff:<failures>:<retry at, ms>`
/// until a refresh may start again.
///
/// KEYS: entry, refresh lock, recency index. ARGV: token, lease in ms, "1"
/// to mark the entry used (LRU).
/// Returns nil on a miss (a load's placeholder included), else `{bytes,
/// state}` with state 0 (fresh), 1 (stale, refreshing or backing off), or
/// `{bytes, 2, failures so far, sha1 of bytes}`: stale, and the caller now
/// holds the refresh lock.
const READ_FRESH: &str = r#"
local doc = redis.pcall('GET', KEYS[1])
if type(doc) ~= 'string' then return false end
if ARGV[3] == '1' then
  local score = redis.call('ZADD', KEYS[3], 'XX', 'INCR', 1, '')
  if score then redis.call('ZADD', KEYS[3], 'XX', score, KEYS[1]) end
end
-- A read: an entry with an idle time is touched (a bounded store's expiry
-- index is not declared here: `set_bounded` files a moved member again).
touch(KEYS[1], doc, nil)
local fresh_until = string.match(doc, '^{"f":(%d+),')
if not fresh_until then return {doc, 0} end
local now = now_ms()
if now < tonumber(fresh_until) then return {doc, 0} end
local held = redis.call('GET', KEYS[2])
local failures = 0
if held then
  local n, at = string.match(held, '^backoff:(%d+):(%d+)$')
  if not n or now < tonumber(at) then return {doc, 1} end
  failures = tonumber(n)
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {doc, 2, failures, redis.sha1hex(doc)}
"#;

/// A refresh failed: if its lock is still the caller's, it becomes the
/// backoff marker, `backoff:<failures>:<retry at>`, kept while the entry
/// lives (so the count of failures in a row survives the wait) and at least
/// until the retry.
///
/// KEYS: lock, entry. ARGV: token, failures in a row, backoff in ms.
const REFRESH_FAILED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local backoff = tonumber(ARGV[3])
local keep = math.max(backoff, redis.call('PTTL', KEYS[2]), 1)
local marker = 'backoff:' .. ARGV[2] .. ':' .. string.format('%d', now_ms() + backoff)
redis.call('SET', KEYS[1], marker, 'PX', string.format('%d', keep))
return 1
";

// The tag scripts (`stores/redis/tags.rs` documents the tag sets).

/// Whether a stored document carries `tag`: its `"t":[...]` array, which the
/// store writes right after `{` (or after a `get_or_refresh` stamp
/// `{"f":<digits>,` and/or a time-to-idle header `"i":<digits>,"d":<digits>,`)
/// and right before `"v":`. Inside a JSON string every `"` is escaped, so
/// the first `],"v":` after `"t":[` ends the array.
const CARRIES_FN: &str = r#"
local function carries(doc, tag)
  if type(doc) ~= 'string' then return false end
  local at = 2
  if string.sub(doc, 1, 5) == '{"f":' then
    local comma = string.find(doc, ',', 6, true)
    if not comma then return false end
    at = comma + 1
  end
  if string.sub(doc, at, at + 3) == '"i":' then
    local _, last = string.find(doc, '^"i":%d+,"d":%d+,', at)
    if not last then return false end
    at = last + 1
  end
  if string.sub(doc, at, at + 4) ~= '"t":[' then return false end
  local close = string.find(doc, '],"v":', at + 5, true)
  if not close then return false end
  local ok, tags = pcall(cjson.decode, string.sub(doc, at + 4, close))
  if not ok or type(tags) ~= 'table' then return false end
  for _, t in ipairs(tags) do
    if t == tag then return true end
  end
  return false
end

-- Whether the member `key` of the tag set of `tag` is still worth keeping:
-- an entry carrying the tag, or a load's placeholder.
local function listed(key, tag)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'hash' then return true end
  if kind ~= 'string' then return false end
  return carries(redis.call('GET', key), tag)
end
"#;

/// Registers an entry (or a load's placeholder to come) in its tag sets.
///
/// KEYS: the tag sets. ARGV: the entry's Redis key, how long the sets must
/// live at least in ms ('0': for ever), then the tags (in the order of KEYS).
/// Returns how many stale members it removed.
const REGISTER: &str = r"
local member, ttl = ARGV[1], tonumber(ARGV[2])
local removed = 0
for i, set in ipairs(KEYS) do
  local tag = ARGV[i + 2]
  for _, other in ipairs(redis.call('SRANDMEMBER', set, 2)) do
    if other ~= member and not listed(other, tag) then
      removed = removed + redis.call('SREM', set, other)
    end
  end
  local pttl = redis.call('PTTL', set)
  redis.call('SADD', set, member)
  if ttl == 0 then
    if pttl >= 0 then redis.call('PERSIST', set) end
  elseif pttl == -2 or (pttl >= 0 and pttl < ttl) then
    redis.call('PEXPIRE', set, ttl)
  end
end
return removed
";

/// Removes the entries of one bucket that carry one of the tags, and the
/// load placeholders listed with them, then the tag sets.
///
/// KEYS: for a bounded store the recency and expiry indexes, then the tag
/// sets. ARGV: "1" if the store is bounded, then the tags (in the order of
/// the tag sets). Returns how many entries it removed.
const INVALIDATE: &str = r"
local first = ARGV[1] == '1' and 3 or 1
local returning = ARGV[2] == '1'
local removed = 0
local gone = {}
for i = first, #KEYS do
  local tag = ARGV[i - first + 3]
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local kind = redis.call('TYPE', key)['ok']
    local doomed = kind == 'hash' and redis.call('HEXISTS', key, 'load') == 1
    if kind == 'string' then
      local doc = redis.call('GET', key)
      if carries(doc, tag) then
        doomed = true
        removed = removed + 1
        if returning then
          gone[#gone + 1] = key
          gone[#gone + 1] = doc
        end
      end
    end
    if doomed then
      redis.call('UNLINK', key)
      if first == 3 then
        redis.call('ZREM', KEYS[1], key)
        redis.call('ZREM', KEYS[2], key)
      end
    end
  end
  redis.call('UNLINK', KEYS[i])
end
if returning then
  table.insert(gone, 1, removed)
  return gone
end
return removed
";

/// Every script a store sends, by name: the parts its Lua source is the
/// concatenation of, in order. The one place a script is composed; the
/// Rust store and the JS store both take their scripts from here.
pub(crate) const TABLE: [(&str, &[&str]); 22] = [
    ("set_bounded", &[NOW_FN, IDLE_FN, INDEX_FN, SET_BOUNDED_FN, SET_BOUNDED_CALL]),
    ("get_lru", &[NOW_FN, IDLE_FN, GET_LRU]),
    ("adopt", &[NOW_FN, INDEX_FN, ADOPT]),
    ("size_bounded", &[NOW_FN, SIZE_BOUNDED]),
    ("delete", &[DELETE]),
    ("replace_if_unchanged", &[REPLACE_IF_UNCHANGED]),
    ("get_or_lock", &[GET_OR_LOCK]),
    ("store_loaded", &[NOW_FN, IDLE_FN, STORE_LOADED_FN, STORE_LOADED_CALL]),
    ("store_loaded_bounded", &[NOW_FN, IDLE_FN, INDEX_FN, SET_BOUNDED_FN, STORE_LOADED_FN, STORE_LOADED_BOUNDED_CALL]),
    ("read_fresh", &[NOW_FN, IDLE_FN, READ_FRESH]),
    ("refresh_failed", &[NOW_FN, REFRESH_FAILED]),
    ("set_idle", &[NOW_FN, IDLE_FN, WRITE_ENTRY, "return 1\n"]),
    ("get_idle", &[NOW_FN, IDLE_FN, GET_IDLE]),
    ("touch_idle", &[NOW_FN, IDLE_FN, TOUCH_IDLE]),
    ("get_lru_many", &[NOW_FN, IDLE_FN, GET_LRU_MANY_HEAD, GET_LRU, GET_LRU_MANY_CALL]),
    ("set_bounded_many", &[NOW_FN, IDLE_FN, INDEX_FN, SET_BOUNDED_FN, SET_BOUNDED_MANY_CALL]),
    ("set_returning", &[NOW_FN, IDLE_FN, READ_OLD, WRITE_ENTRY, "return old\n"]),
    ("set_bounded_returning", &[NOW_FN, IDLE_FN, INDEX_FN, SET_BOUNDED_FN, READ_OLD, SET_BOUNDED_RETURNING_CALL]),
    ("unlock_load", &[UNLOCK_LOAD]),
    ("unlock", &[UNLOCK]),
    ("register_tags", &[CARRIES_FN, REGISTER]),
    ("invalidate_tags", &[CARRIES_FN, INVALIDATE]),
];

/// The Lua source of the script `name` of [`TABLE`].
///
/// # Panics
/// If `name` is not in [`TABLE`] (a typo in the crate: every caller names a
/// constant, and a unit test builds them all).
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis store's
pub(crate) fn source(name: &str) -> String {
    match TABLE.iter().find(|(n, _)| *n == name) {
        Some((_, parts)) => parts.concat(),
        None => panic!("no script {name:?} in the script table"),
    }
}

/// A script of [`TABLE`] composed: its name, its Lua source and the SHA1 of
/// the source in lowercase hex (what `EVALSHA` takes).
#[cfg_attr(not(any(test, feature = "js-redis")), allow(dead_code))]
pub(crate) struct ScriptText {
    pub name: &'static str,
    pub source: String,
    pub sha1: String,
}

/// Every script of [`TABLE`], composed and hashed (what the JS store sends).
// Only the wasm bindings and the tests call it.
#[cfg_attr(not(any(test, feature = "js-redis")), allow(dead_code))]
pub(crate) fn table() -> Vec<ScriptText> {
    TABLE
        .iter()
        .map(|&(name, parts)| {
            let source = parts.concat();
            let sha1 = sha1_smol::Sha1::from(source.as_bytes()).digest().to_string();
            ScriptText { name, source, sha1 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of this many lines of Lua (blank lines and bare `end`s not
    /// counted) found in two parts of [`TABLE`], or twice in one, is a near
    /// copy: it belongs in a part (or a Lua function) of its own.
    const COPIED_RUN: usize = 4;

    #[test]
    fn no_part_repeats_another_parts_lines() {
        let mut parts: Vec<&str> = TABLE.iter().flat_map(|(_, parts)| parts.iter().copied()).collect();
        parts.sort_unstable();
        parts.dedup();
        let mut seen: std::collections::HashMap<Vec<&str>, usize> = std::collections::HashMap::new();
        let mut copies = Vec::new();
        for (at, part) in parts.iter().enumerate() {
            let lines: Vec<&str> = part
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && *line != "end" && !line.starts_with("--"))
                .collect();
            for run in lines.windows(COPIED_RUN) {
                if let Some(first) = seen.insert(run.to_vec(), at) {
                    copies.push(format!("{run:#?} in parts {first} and {at}"));
                }
            }
        }
        assert!(copies.is_empty(), "near copies in the script table:\n{}", copies.join("\n"));
    }

    #[test]
    fn every_script_is_named_once_and_hashed_as_redis_does() {
        let table = table();
        let mut names: Vec<_> = table.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        for script in &table {
            assert_eq!(script.source, source(script.name));
            assert_eq!(script.sha1.len(), 40);
        }
        // SHA1("return 1"), as `redis-cli SCRIPT LOAD "return 1"` answers.
        assert_eq!(sha1_smol::Sha1::from("return 1").digest().to_string(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}

-- The qtasks Redis backend: every operation that changes more than one key, in one function.
--
-- This file is a library body: `protocol.py` loads it as the Redis Function library
-- `qtasks_<hash of this text>` (FCALL), or, where functions cannot be used (Redis before 7.0,
-- Sentinel and Cluster clients), sends it as a script ending in `return qtasks(KEYS, ARGV)`.
-- A function is why the helpers below are plain locals made once: a script builds all of
-- them again on every call (docs/architecture.md has what that cost). So everything that
-- belongs to one call is reset by `begin`.
--
-- keys[1] is the app's `seq` key: it only routes the call (in Redis Cluster, to the node that
-- owns the app's hash tag). Every other key is built here from the prefix args[1]
-- ("qtasks:{app}:"); they all carry the same tag, so they all live in that one slot.
-- args[2] names the operation; the rest are its arguments, read in order by `arg()`.
--
-- Layout (see docs/design/redis.md): a message is a hash `m:<id>` (`u` uuid, `q` queue, `p`
-- priority, `pl` payload, `tok` fencing token, `st` starts, `sk` the token it was started under)
-- and sits in exactly one of its queue's `ready` (score = priority; equal scores sort by id, and
-- ids are zero-padded hex, so FIFO), `delayed` (score = due ms) or `leased` (score = lease
-- deadline ms) sorted sets. A record is a hash `r:<uuid>`; its extra fields are stored one per
-- hash field (`x:<name>` = JSON text), so merging extras never decodes JSON here.
--
-- Every write is checked against the message's current token first: a worker whose lease ran
-- out and was taken by another can change nothing (fencing). Scripts run whole or not at all,
-- but a reply can be lost with its connection and the call sent again: enqueue skips uuids it
-- has, an outcome already written by the same delivery (`fin`) is accepted again, a start
-- already counted under the same token (`sk`) is not counted twice.

local P, ARGS, pos = '', {}, 2
local function arg() pos = pos + 1; return ARGS[pos] end
local function num() return tonumber(arg()) end
local function opt()  -- optional text: '' is none, anything else carries a one-byte prefix
  local v = arg()
  if v == '' then return nil end
  return string.sub(v, 2)
end

-- Scores are whole numbers: NOW in whole ms, deadlines and due times rounded to the ms, the
-- record indexes scored by creation time in whole microseconds (`cscore`). Redis keeps a whole
-- score as an integer in a small sorted set (a listpack), where a fractional one is text it
-- parses with strtod at every comparison: in a drain, that parsing was 30 % of Redis' work.

-- A whole number as text (truncated): Redis turns a Lua number given to a command into text
-- with '%.17g' (and Lua, joining one to a string, with '%.14g'): several times what '%d' costs,
-- and a round trip's calls gave it about 25 numbers. Every command on a hot path gets text.
local function int(x) return string.format('%d', x) end

-- The clock is read as text and kept as text, with one number made from it: the
-- microseconds are zero-padded to six digits, and their first three are the ms.
local NOW, NOW_S, NOW_MS = 0, '', ''  -- the clock: ms, seconds as text, ms as text (`begin`)
local PAD = {'00000', '0000', '000', '00', '0', ''}  -- by the number of digits
local function clock()
  local t = redis.call('TIME')
  local us = PAD[#t[2]] .. t[2]
  NOW_S = t[1] .. '.' .. us
  NOW_MS = t[1] .. string.sub(us, 1, 3)
  NOW = tonumber(NOW_MS)
  return NOW
end

local FINAL = {success = true, error = true, cancel = true}
local STATUSES = {'new', 'process', 'success', 'error', 'cancel'}
local SEARCH_BUDGET = 20000  -- records one search looks at, at most, when it checks fields itself

local function rkey(u) return P .. 'r:' .. u end
local function mkey(id) return P .. 'm:' .. id end

-- settings every call carries: result TTL (ms, 0 keeps records), dead-letter cap and TTL (ms)
-- They are the same from call to call: parsed again only when their text changes.
local RESULT_TTL, DL_MAX, DL_TTL = 0, 0, 0
local BACKSTOP = ''  -- a final record's own expiry: a day after the sweep's (ms, as text)
local SETTINGS = {}  -- the texts last parsed
local function settings()
  local ttl, cap, dl_ttl = arg(), arg(), arg()
  local was = SETTINGS
  if ttl == was[1] and cap == was[2] and dl_ttl == was[3] then return end
  SETTINGS = {ttl, cap, dl_ttl}
  RESULT_TTL, DL_MAX, DL_TTL = tonumber(ttl), tonumber(cap), tonumber(dl_ttl)
  BACKSTOP = int(RESULT_TTL + 86400000)
end

-- -- gathered writes -----------------------------------------------------------------------------

-- Most of a task's writes are one member more in a set that every task of the batch touches
-- (the status indexes, the lease, ready and done sets, the uuid map, the deleted message
-- hashes). Each `redis.call` costs about a microsecond before the command does anything, so
-- those writes are gathered per command and key, and `flush` sends each as one command. Only
-- writes that nothing later in the same phase reads are gathered; a phase (the outcomes, the
-- starts, the claims of a round trip) flushes before the next reads, and every call flushes
-- before it returns. A message deleted while its DEL waits is remembered in DROPPED. Gathering
-- costs more than it saves for a call about one task, so GATHER turns it on for batches only.
local PEND, ORDER, DROPPED, GATHER = {}, {}, {}, false
local function pend(cmd, key, a, b)  -- key false: the members are keys (DEL)
  if not GATHER then
    if not key then redis.call(cmd, a)
    elseif b == nil then redis.call(cmd, key, a)
    else redis.call(cmd, key, a, b) end
    return
  end
  local by_key = PEND[cmd]
  if not by_key then by_key = {}; PEND[cmd] = by_key end
  local e = by_key[key]  -- key false (DEL) is a table key like any other
  if not e then
    e = {cmd, key}
    by_key[key] = e
    ORDER[#ORDER + 1] = e
  end
  e[#e + 1] = a
  if b ~= nil then e[#e + 1] = b end
end

local function flush()
  for _, e in ipairs(ORDER) do
    local cmd, key = e[1], e[2]
    local step = (cmd == 'ZADD' or cmd == 'HSET') and 2000 or 1000  -- pairs stay whole
    for i = 3, #e, step do
      local last = math.min(i + step - 1, #e)
      if key then redis.call(cmd, key, unpack(e, i, last))
      else redis.call(cmd, unpack(e, i, last)) end
    end
  end
  if ORDER[1] then PEND, ORDER = {}, {} end
end

-- Keys that many tasks of a batch share are built once per call: a string built in Lua is
-- hashed and interned, which a batch would otherwise do per task. A call about one task builds
-- each key once anyway, so it keeps no table (`begin` drops both).
local SHARED, QKEYS = nil, nil
local function shared(kind, name)  -- P .. kind .. name
  if not GATHER then return P .. kind .. name end
  SHARED = SHARED or {}
  local by_kind = SHARED[kind]
  if not by_kind then by_kind = {}; SHARED[kind] = by_kind end
  local k = by_kind[name]
  if not k then k = P .. kind .. name; by_kind[name] = k end
  return k
end
local function qkey(q, part)  -- P .. 'q:' .. q .. ':' .. part
  if not GATHER then return P .. 'q:' .. q .. ':' .. part end
  QKEYS = QKEYS or {}
  local by_q = QKEYS[q]
  if not by_q then by_q = {}; QKEYS[q] = by_q end
  local k = by_q[part]
  if not k then k = P .. 'q:' .. q .. ':' .. part; by_q[part] = k end
  return k
end

-- -- records -------------------------------------------------------------------------------------

-- A record's index score: its creation time (seconds, as text) in whole microseconds. The
-- client computes the same for a search's bounds (`protocol._us`).
local function cscore(created) return int(math.floor(tonumber(created) * 1e6 + 0.5)) end

local function index_status(u, old, new, score)
  if old then pend('ZREM', shared('ix:st:', old), u) end
  pend('ZADD', shared('ix:st:', new), score, u)
end

-- Records are also indexed by task name (the search's name filter reads that index, never the
-- whole store); the set of names lets a flush and the sweep find every name index.
local NAMED = nil  -- names a batch added to the set already (`begin` drops it)
local function index_name(u, name, score)
  pend('ZADD', shared('ix:nm:', name), score, u)
  if not GATHER then
    pend('SADD', shared('', 'names'), name)
  elseif not (NAMED and NAMED[name]) then
    pend('SADD', shared('', 'names'), name)
    NAMED = NAMED or {}
    NAMED[name] = true
  end
end

-- A task as the client encodes it: uuid, name, priority, args, kwargs, created_at and its
-- index score (`cscore`), for its message queue, due ms ('' = now) and envelope, then extras.
-- Every plain field is in the constructor, which sizes the table once (a field added later
-- would make Lua grow it again, per task).
local function read_task()
  local task = {u = arg(), name = arg(), p = arg(), args = arg(), kwargs = arg(), created = arg(),
    score = arg(), q = arg(), eta = tonumber(arg()), pl = arg(), extra = false}
  local n = num()
  if n > 0 then
    local extra = {}
    for i = 1, n * 2 do extra[i] = arg() end
    task.extra = extra
  end
  return task
end

-- Whether none of these tasks has a record yet, in one EXISTS for the lot: in a bulk enqueue
-- none has, unless the call is one sent again after its reply was lost (then each is checked).
-- Each task keeps its record's key (`k`), and `fresh` is set for the uuids checked absent.
local function none_recorded(tasks)
  local keys, fresh = {}, {}
  for i, t in ipairs(tasks) do
    t.k = rkey(t.u)
    keys[i] = t.k
  end
  for i = 1, #keys, 1000 do
    if redis.call('EXISTS', unpack(keys, i, math.min(i + 999, #keys))) > 0 then return nil end
  end
  for _, t in ipairs(tasks) do fresh[t.u] = true end
  return fresh
end

-- A new record's fields, and the field-value pairs given after `task` (a vararg: the usual
-- record, with or without its waiter, builds no table).
local function write_new(k, task, ...)
  redis.call('HSET', k, 'task_name', task.name, 'priority', task.p, 'status', 'new',
    'args', task.args, 'kwargs', task.kwargs, 'created_at', task.created,
    'updated_at', task.created, 'queue', task.q, ...)
end

-- fresh: uuids known to have no record (from `none_recorded`); each is used up as its record
-- is written, so the same uuid twice in one call is checked the second time.
local function create_record(task, watcher, fresh)  -- watcher: a listener's id ('' or nil)
  local k = task.k or rkey(task.u)
  if fresh and fresh[task.u] then
    fresh[task.u] = nil
  elseif redis.call('EXISTS', k) == 1 then
    return false
  end
  local watched = watcher and watcher ~= ''
  if not task.extra then  -- the usual task, without building a table
    if watched then write_new(k, task, 'waiters', watcher) else write_new(k, task) end
  else  -- with extras: only they (and the waiter) go in a table
    local more = {}
    if watched then more[1] = 'waiters'; more[2] = watcher end
    local extra = task.extra
    for i = 1, #extra, 2 do
      more[#more + 1] = 'x:' .. extra[i]; more[#more + 1] = extra[i + 1]
    end
    write_new(k, task, unpack(more))
  end
  local score = task.score
  pend('ZADD', shared('', 'ix:all'), score, task.u)
  index_status(task.u, nil, 'new', score)
  index_name(task.u, task.name, score)
  return true
end

-- A record became final: index it by finish time (expiry), let it expire by itself as a
-- backstop, and tell the producers waiting for it: each listener whose id the record's
-- `waiters` field holds, on that listener's own channel (so no producer hears of records it
-- does not wait for). The notice carries the record (its hash as HGETALL gives it, fields
-- and values in turn, a JSON array of strings, which cjson encodes exactly), so a waiter
-- need not read it again.
local function finalized(u, k, waiters)  -- the field's value, false if none, nil if not read
  pend('ZADD', shared('', 'done'), NOW_MS, u)
  if RESULT_TTL > 0 then redis.call('PEXPIRE', k, BACKSTOP) end
  if waiters == nil then waiters = redis.call('HGET', k, 'waiters') end
  if waiters then
    local notice = u .. '\n' .. cjson.encode(redis.call('HGETALL', k))
    for id in string.gmatch(waiters, '%S+') do
      local channel = P .. 'final:' .. id
      -- Sharded pub/sub keeps the notice on the app's own shard of a Cluster. A server before
      -- 7.0 lacks it: there the listeners subscribe with SUBSCRIBE, and this falls back on
      -- PUBLISH (it only runs this code as a script, EVALSHA, having no functions).
      local sent = redis.pcall('SPUBLISH', channel, notice)
      if type(sent) == 'table' and sent.err then redis.call('PUBLISH', channel, notice) end
    end
  end
end

local function set_running(u, holder)  -- 'final', 'missing' or 'ok'
  local k = rkey(u)
  local cur = redis.call('HMGET', k, 'status', 'created_at')
  local status = cur[1]
  if not status then return 'missing' end
  if FINAL[status] then return 'final' end
  if status == 'new' then
    redis.call('HSET', k, 'holder', holder, 'updated_at', NOW_S, 'status', 'process')
    index_status(u, 'new', 'process', cscore(cur[2]))
  else
    redis.call('HSET', k, 'holder', holder, 'updated_at', NOW_S)
  end
  return 'ok'
end

local function set_queued(u, holder)
  local k = rkey(u)
  local cur = redis.call('HMGET', k, 'status', 'holder', 'created_at')
  if cur[1] == 'process' and cur[2] == holder then
    redis.call('HSET', k, 'status', 'new')
    redis.call('HDEL', k, 'holder')
    index_status(u, 'process', 'new', cscore(cur[3]))
  end
end

local function cancel_record(u, reason)
  local k = rkey(u)
  local cur = redis.call('HMGET', k, 'status', 'created_at')
  if cur[1] ~= 'new' then return false end
  redis.call('HSET', k, 'status', 'cancel', 'updated_at', NOW_S, 'x:cancel_reason', reason)
  index_status(u, 'new', 'cancel', cscore(cur[2]))
  finalized(u, k)
  return true
end

-- Remove final records finished before `cutoff` (ms, as text, or '+inf'), at most `n`; never
-- one whose task still has a message (a worker may hold it). Returns how many went.
local function sweep(cutoff, n)
  flush()
  local old = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', cutoff, 'LIMIT', '0', int(n))
  if #old == 0 then return 0, 0 end
  local gone, later = {}, {}
  local by_status, by_name = {}, {}
  for _, u in ipairs(old) do
    if redis.call('HEXISTS', P .. 'byuuid', u) == 1 then
      later[#later + 1] = u  -- a worker may still hold its message: look again later
    else
      local k = rkey(u)
      local cur = redis.call('HMGET', k, 'status', 'task_name')
      local status = cur[1]
      if status == false or FINAL[status] then
        redis.call('DEL', k)
        gone[#gone + 1] = u
        local key = status or ''  -- '' : expired by itself, its status and name unknown
        by_status[key] = by_status[key] or {}
        table.insert(by_status[key], u)
        local name = cur[2] or ''
        by_name[name] = by_name[name] or {}
        table.insert(by_name[name], u)
      end
    end
  end
  redis.call('ZREM', P .. 'done', unpack(old))
  for _, u in ipairs(later) do redis.call('ZADD', P .. 'done', NOW_MS, u) end
  if #gone > 0 then
    redis.call('ZREM', P .. 'ix:all', unpack(gone))
    for status, members in pairs(by_status) do
      if status == '' then
        for s in pairs(FINAL) do redis.call('ZREM', P .. 'ix:st:' .. s, unpack(members)) end
      else
        redis.call('ZREM', P .. 'ix:st:' .. status, unpack(members))
      end
    end
    for name, members in pairs(by_name) do
      if name == '' then
        for _, n in ipairs(redis.call('SMEMBERS', P .. 'names')) do
          redis.call('ZREM', P .. 'ix:nm:' .. n, unpack(members))
        end
      else
        redis.call('ZREM', P .. 'ix:nm:' .. name, unpack(members))
      end
    end
  end
  return #gone, #old
end

local function expire_results(n)  -- how many expired records it looked at
  if RESULT_TTL <= 0 then return 0 end
  local _, seen = sweep(int(NOW - RESULT_TTL), n)
  return seen
end

local function dead_letter(u, name, reason, payload, deliveries)
  local args = {'XADD', P .. 'dead'}
  if DL_MAX > 0 then
    args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = DL_MAX
  end
  args[#args + 1] = '*'
  for _, v in ipairs({'uuid', u, 'task_name', name, 'reason', reason, 'payload', payload or '',
                      'deliveries', deliveries, 'created_at', NOW_S}) do
    args[#args + 1] = v
  end
  redis.call(unpack(args))
end

-- -- messages ------------------------------------------------------------------------------------

-- Within one call, a queue is registered and its ready marker set once, not per message.
local KNOWN, MARKED = {}, {}  -- reset by `begin`

local function schedule(id, q, p, eta)
  if eta then eta = math.ceil(eta) end  -- a whole ms, never before the time asked for
  if eta and eta > (NOW or clock()) then
    eta = int(eta)
    pend('ZADD', qkey(q, 'delayed'), eta, id)
    redis.call('ZADD', qkey(q, 'wake'), 'LT', eta, 't')
  else
    pend('ZADD', qkey(q, 'ready'), p, id)
    if not MARKED[q] then
      redis.call('ZADD', qkey(q, 'wake'), '0', 'r')
      MARKED[q] = true
    end
  end
end

-- Message ids: a bulk enqueue reserves its range with one INCRBY (see `reserve`).
local NEXT_ID, LAST_ID = 0, -1  -- reset by `begin`
local function reserve(n)
  LAST_ID = redis.call('INCRBY', P .. 'seq', n)
  NEXT_ID = LAST_ID - n + 1
end

local function put_message(u, q, p, eta, pl)
  if NEXT_ID > LAST_ID then reserve(1) end
  local id = string.format('%016x', NEXT_ID)
  NEXT_ID = NEXT_ID + 1
  redis.call('HSET', mkey(id), 'u', u, 'q', q, 'p', p, 'pl', pl, 'tok', '0', 'st', '0')
  if u ~= '' then pend('HSET', shared('', 'byuuid'), u, id) end
  if not KNOWN[q] then
    redis.call('SADD', P .. 'queues', q)
    KNOWN[q] = true
  end
  schedule(id, q, p, eta)
  return id
end

local function drop_message(id, u, q, leased)  -- leased: false when it is in no lease set
  pend('DEL', false, mkey(id))
  DROPPED[id] = true
  if leased ~= false then pend('ZREM', qkey(q, 'leased'), id) end
  -- a uuid has one message at a time (enqueue skips a uuid it has), so this is its entry
  if u and u ~= '' then pend('HDEL', shared('', 'byuuid'), u) end
end

-- The message `id` if `tok` is still its token: its hash fields u, q, p, tok, st, sk.
local function held(id, tok)
  if DROPPED[id] then return nil end
  local m = redis.call('HMGET', mkey(id), 'u', 'q', 'p', 'tok', 'st', 'sk')
  if not m[4] or m[4] ~= tok then return nil end
  return m
end

local function live(id, tok, q)  -- held, and the lease has not run out
  local m = held(id, tok)
  if not m then return nil end
  local deadline = redis.call('ZSCORE', qkey(m[2], 'leased'), id)
  if not deadline or tonumber(deadline) < NOW then return nil end
  return m
end

-- The earliest score in the sorted set `key` (a number), or nil when the set is empty.
local function earliest(key)
  local first = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end

-- The earlier of two times (ms), either of which may be nil.
local function earlier(a, b)
  if not a or (b and b < a) then return b end
  return a
end

-- Due delayed messages and run-out leases of queue q become ready (at most n of each). A set
-- is scanned only when its earliest score says something in it is due: a claim usually finds
-- nothing due, and then reads each set once. Returns the earliest scores left in the delayed
-- and the leased set (nil: empty), which is what `next_wake` reads.
local function promote(q, n)
  local delayed, leased, ready = qkey(q, 'delayed'), qkey(q, 'leased'), qkey(q, 'ready')
  local first_due = earliest(delayed)
  if first_due and first_due <= NOW then
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', NOW_MS, 'LIMIT', '0', n)
    for _, id in ipairs(due) do
      redis.call('ZREM', delayed, id)
      local p = redis.call('HGET', mkey(id), 'p')
      if p then redis.call('ZADD', ready, p, id) end
    end
    first_due = earliest(delayed)
  end
  local first_end = earliest(leased)
  if first_end and first_end < NOW then
    local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', '(' .. NOW_MS, 'LIMIT', '0', n)
    for _, id in ipairs(expired) do
      redis.call('ZREM', leased, id)
      local p = redis.call('HGET', mkey(id), 'p')
      if p then  -- its worker is gone: a new token voids the old delivery
        redis.call('HINCRBY', mkey(id), 'tok', '1')
        redis.call('ZADD', ready, p, id)
      end
    end
    first_end = earliest(leased)
  end
  return first_due, first_end
end

-- Up to `limit` ready ids over `queues`: lowest priority first, then oldest. Returned with
-- the step between them: one queue's pop gives ids and scores in turn (2), as it is.
local function pick(queues, limit)
  if #queues == 1 then
    return redis.call('ZPOPMIN', qkey(queues[1], 'ready'), int(limit)), 2
  end
  local all = {}
  for _, q in ipairs(queues) do
    local got = redis.call('ZRANGE', qkey(q, 'ready'), '0', int(limit - 1), 'WITHSCORES')
    for i = 1, #got, 2 do all[#all + 1] = {tonumber(got[i + 1]), got[i], q} end
  end
  table.sort(all, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local ids = {}
  for i = 1, math.min(limit, #all) do
    redis.call('ZREM', qkey(all[i][3], 'ready'), all[i][2])
    ids[i] = all[i][2]
  end
  return ids, 1
end

-- -- worker round trip ---------------------------------------------------------------------------

-- One outcome: fused, fenced by the message token; store only, by the record's holder.
-- Returns true if taken. WRITTEN: the deliveries whose outcome this call wrote (a second one
-- for the same delivery in one batch is rejected; the same one in a resent call is not).
-- The outcome's fields are locals, not a table, and the usual one (a result, with the worker's
-- three fields) is written in one HSET of its own: each table a call makes costs Redis an
-- allocation, and a table that grows past its constructor one more.
local WRITTEN = {}
local CALL = ''  -- the id of this call: the same when a lost reply makes the client resend it
local function write_outcome(fused)
  local id, tok, u, holder, started, status, name, p, args, kwargs, created, ret, tb
  local worker, nth, began  -- the 'c' form's worker fields ('' worker: none)
  local extra, dl, payload, deliveries, follow
  if arg() == 'c' then
    -- the common case in 11 arguments: a plain result, no extras, dead letter or follow-up;
    -- the worker that ran it (as JSON text, '' = none), the number of this start, and when
    -- it began
    id, tok, u, status, name, p, created = arg(), arg(), arg(), arg(), arg(), arg(), arg()
    ret, started = opt(), '1'
    worker, nth, began = arg(), arg(), arg()
  else
    id, tok, u, holder, started = arg(), arg(), arg(), arg(), arg()
    status, name, p, args, kwargs = arg(), arg(), arg(), opt(), opt()
    created, ret, tb = arg(), opt(), opt()
    local n = num()
    if n > 0 then
      extra = {}
      for i = 1, n * 2 do extra[i] = arg() end
    end
    dl, payload, deliveries = opt(), opt(), arg()
    if arg() == '1' then follow = read_task() end
  end

  local k = rkey(u)
  local cur = redis.call('HMGET', k, 'status', 'fin', 'holder', 'created_at', 'waiters',
    'returning', 'traceback')
  local mine = id .. ':' .. tok .. '@' .. CALL
  if cur[1] and FINAL[cur[1]] and cur[2] == mine and not WRITTEN[mine] then
    return true  -- this very write was made before and its reply lost
  end
  if fused and id ~= '' then
    local m = held(id, tok)
    if not m then return false end
    drop_message(id, m[1], m[2])
  end
  if cur[1] and FINAL[cur[1]] then return false end
  if not fused and started == '1' and cur[3] and cur[3] ~= (holder or id .. ':' .. tok) then
    return false
  end

  local created_at = cur[4] or (created ~= '' and created ~= '0' and created) or NOW_S
  local score = cscore(created_at)
  if not cur[1] then
    redis.call('HSET', k, 'task_name', name, 'priority', p, 'args', args or '[]',
      'kwargs', kwargs or '{}', 'created_at', created_at)
    redis.call('ZADD', P .. 'ix:all', score, u)
    index_name(u, name, score)
  end
  -- only fields that are there: a final record keeps its holder (nothing reads it then)
  local drop_holder = cur[3] and not FINAL[status]
  if worker and worker ~= '' and ret and not cur[7] and not drop_holder then
    redis.call('HSET', k, 'status', status, 'updated_at', NOW_S, 'fin', mine, 'returning', ret,
      'x:worker', worker, 'x:deliveries', nth, 'x:started_at', began)
  else
    local set = {'HSET', k, 'status', status, 'updated_at', NOW_S, 'fin', mine}
    local unset = {'HDEL', k}
    if drop_holder then unset[#unset + 1] = 'holder' end
    if ret then set[#set + 1] = 'returning'; set[#set + 1] = ret
    elseif cur[6] then unset[#unset + 1] = 'returning' end
    if tb then set[#set + 1] = 'traceback'; set[#set + 1] = tb
    elseif cur[7] then unset[#unset + 1] = 'traceback' end
    if worker and worker ~= '' then
      extra = {'worker', worker, 'deliveries', nth, 'started_at', began}
    end
    if extra then
      for i = 1, #extra, 2 do set[#set + 1] = 'x:' .. extra[i]; set[#set + 1] = extra[i + 1] end
    end
    redis.call(unpack(set))
    if #unset > 2 then redis.call(unpack(unset)) end
  end
  WRITTEN[mine] = true
  index_status(u, cur[1] or nil, status, score)
  finalized(u, k, cur[5])
  if dl then dead_letter(u, name, dl, payload, deliveries) end
  if follow and create_record(follow) then
    put_message(follow.u, follow.q, follow.p, follow.eta, follow.pl)
  end
  return true
end

-- Start deliveries: count each under a live lease once (`sk` remembers the token it counted).
-- Returns the message fields, or nil when the lease is lost.
local function start_one(id, tok)
  local m = live(id, tok)
  if not m then return nil end
  if m[6] ~= tok then
    redis.call('HSET', mkey(id), 'st', int(tonumber(m[5]) + 1), 'sk', tok)
  end
  return m
end

-- Ms from now until the earliest due time or lease end `at` (0: past; -1: none), as the
-- worker is told it: when to look again without being woken.
local function wake_in(at)
  if not at then return -1 end
  return math.max(0, math.ceil(at - NOW))
end

local function next_wake(queues)
  local best = nil
  for _, q in ipairs(queues) do
    best = earlier(best, earlier(earliest(qkey(q, 'delayed')), earliest(qkey(q, 'leased'))))
  end
  return wake_in(best)
end

-- abandoned: the call was sent behind an idle worker's blocking pop (`woken`) that the worker
-- gave up; it writes nothing and claims nothing, and sets ready markers again for the others.
local function exchange(fused, abandoned)
  CALL = arg()
  local worker, limit, lease, start = arg(), num(), num(), num()
  if abandoned then limit = 0 end
  local nq = num()
  local queues = {}
  for i = 1, nq do queues[i] = arg() end

  local rejected, refused, out = {}, {}, {}
  local written = 0
  -- Each phase gathers its writes only when it has more than one task to write about.
  local n = num()
  GATHER = n > 1
  for i = 1, n do
    if fused then
      if write_outcome(true) then written = written + 1 else rejected[#rejected + 1] = i end
    else  -- broker only: remove the message if the token is current
      local id, tok = arg(), arg()
      local m = held(id, tok)
      if m then drop_message(id, m[1], m[2]) else rejected[#rejected + 1] = i end
    end
  end
  flush()  -- the starts and the promotion below read the lease set
  n = num()
  GATHER = n > 1
  for i = 1, n do
    local id, tok, holder = arg(), arg(), arg()
    local m = start_one(id, tok)
    if not m then
      refused[#refused + 1] = i
    elseif fused and m[1] ~= '' and set_running(m[1], holder) == 'final' then
      drop_message(id, m[1], m[2])  -- cancelled meanwhile: do not run it
      refused[#refused + 1] = i
    end
  end
  flush()

  local wake_at = nil  -- with a claim: the earliest due time or lease end left
  if limit > 0 then
    for _, q in ipairs(queues) do
      local first_due, first_end = promote(q, '1000')
      wake_at = earlier(wake_at, earlier(first_due, first_end))
    end
    local deadline, leased = int(NOW + lease), false
    local ids, step = pick(queues, limit)
    local picked = #ids / step
    GATHER = picked > 1
    for i = 1, #ids, step do
      local id = ids[i]
      local mk = mkey(id)
      local m = redis.call('HMGET', mk, 'u', 'q', 'p', 'pl', 'st', 'tok')
      if m[2] then
        local tok = int(tonumber(m[6]) + 1)
        local starts, started = m[5], '0'
        if start > 0 and starts == '0' then
          start = start - 1
          started = '1'
          redis.call('HSET', mk, 'tok', tok, 'st', '1', 'sk', tok)
        else
          redis.call('HSET', mk, 'tok', tok)
        end
        if fused and started == '1' and m[1] ~= ''
            and set_running(m[1], id .. ':' .. tok) == 'final' then
          drop_message(id, m[1], m[2], false)  -- cancelled meanwhile: never leased
        else
          pend('ZADD', qkey(m[2], 'leased'), deadline, id)
          leased = true
          local o = #out  -- eight fields a message, in one flat array (no table each)
          out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, m[1], m[4], starts
          out[o + 5], out[o + 6], out[o + 7], out[o + 8] = m[3], m[2], tok, started
        end
      end
    end
    flush()
    if leased then wake_at = earlier(wake_at, tonumber(deadline)) end
    -- Work left: wake the next idle worker. One queue's pop that took fewer than it asked for
    -- emptied the ready set; otherwise look.
    if #queues > 1 or picked >= limit then
      for _, q in ipairs(queues) do
        if redis.call('ZCARD', qkey(q, 'ready')) > 0 then
          redis.call('ZADD', qkey(q, 'wake'), '0', 'r')
        end
      end
    end
  end
  if written > 0 then expire_results(written * 2 + 10) end
  if abandoned then
    -- The pop may have taken a ready marker meant for another worker: set it again while
    -- there is ready work. A timer marker it took is not put back: the worker that gave the
    -- wait up makes its next round trip at once, which reports the next due time to it.
    for _, q in ipairs(queues) do
      if redis.call('ZCARD', qkey(q, 'ready')) > 0 then
        redis.call('ZADD', qkey(q, 'wake'), '0', 'r')
      end
    end
  end
  return {rejected, refused, out, limit > 0 and wake_in(wake_at) or next_wake(queues)}
end

-- New deadlines for live leases: lease ms, a count, then id, tok pairs. Returns the indexes
-- (from 1) of those whose lease was lost.
local function extend_leases()
  local lease, n = num(), num()
  local lost = {}
  for i = 1, n do
    local id, tok = arg(), arg()
    local m = live(id, tok)
    if m then
      redis.call('ZADD', qkey(m[2], 'leased'), 'XX', int(NOW + lease), id)
    else
      lost[#lost + 1] = i
    end
  end
  return lost
end

-- -- operations ----------------------------------------------------------------------------------

-- What one call starts from: its arguments, the clock, and nothing left from the call before.
-- An enqueue reads the clock only for a task with a due time (`schedule`): records carry the
-- client's creation time, and each call into Redis costs a few microseconds on its hot path.
local function begin(args)
  P, ARGS, pos = args[1], args, 2
  if args[2] == 'enqueue' then NOW, NOW_S, NOW_MS = nil, nil, nil else clock() end
  settings()
  -- A table is made again only if the call before used it: a call about one task uses few,
  -- and each table made costs Redis about 0.3 us (with its collection).
  if ORDER[1] then PEND, ORDER = {}, {} end
  if next(DROPPED) then DROPPED = {} end
  GATHER = false
  if next(KNOWN) then KNOWN = {} end
  if next(MARKED) then MARKED = {} end
  SHARED, QKEYS, NAMED = nil, nil, nil
  NEXT_ID, LAST_ID = 0, -1
  if next(WRITTEN) then WRITTEN = {} end
  CALL = ''
end

local function dispatch(op)
if op == 'exchange' then
  return exchange(true)

elseif op == 'woken' then  -- an idle worker's claim, sent right behind its blocking pop of the
  -- wake markers on the same connection, so that it runs the moment the pop returns; then an
  -- exchange. The key (the worker's per-wait `abandon` key) is set when the worker gave the
  -- wait up: the claim is skipped, so nothing is taken for a caller that has gone.
  return exchange(true, redis.call('DEL', P .. arg()) == 1)

elseif op == 'fetch' then  -- the broker role on its own
  return exchange(false)

elseif op == 'enqueue' then  -- mode: F records and messages, M messages only, R records only
  -- watcher: the id of the listener about to wait for these records ('' if none)
  local mode, watcher, n = arg(), arg(), num()
  local added = 0
  local QUEUED = mode == 'M' and {} or nil  -- uuids given a message by this call (messages
  --                                            only: their map entry is gathered)
  if mode ~= 'R' then reserve(n) end  -- ids of tasks it already has stay unused: harmless
  GATHER = n > 1
  local tasks = {}
  for i = 1, n do tasks[i] = read_task() end
  local fresh = mode ~= 'M' and n > 1 and none_recorded(tasks) or nil
  for _, task in ipairs(tasks) do
    if mode == 'M' then
      if task.u == '' or (not QUEUED[task.u] and redis.call('HEXISTS', P .. 'byuuid', task.u) == 0) then
        if task.u ~= '' then QUEUED[task.u] = true end
        put_message(task.u, task.q, task.p, task.eta, task.pl)
        added = added + 1
      end
    elseif create_record(task, watcher, fresh) then
      if mode == 'F' then put_message(task.u, task.q, task.p, task.eta, task.pl) end
      added = added + 1
    end
  end
  return added

elseif op == 'release' then  -- fused flag, delay ms, then id, tok, uuid, holder, started
  local fused, delay, n = arg() == '1', num(), num()
  for _ = 1, n do
    local id, tok, u, holder, started = arg(), arg(), arg(), arg(), arg()
    local m = held(id, tok)
    if m then
      if fused and started == '1' and m[1] ~= '' then set_queued(m[1], holder) end
      redis.call('HINCRBY', mkey(id), 'tok', 1)  -- the released delivery's token is void
      redis.call('ZREM', qkey(m[2], 'leased'), id)
      schedule(id, m[2], m[3], delay > 0 and NOW + delay or nil)
    end
  end
  return 0

elseif op == 'extend' then  -- lease ms, then id, tok; returns the indexes whose lease is lost
  return extend_leases()

elseif op == 'heartbeat' then  -- worker id, expiry ms, info pairs; then an extend
  local id, lease = arg(), num()
  local n = num()
  local info = {}
  for i = 1, n * 2 do info[i] = arg() end
  redis.call('ZADD', P .. 'workers', int(NOW + lease), id)
  redis.call('HSET', P .. 'worker:' .. id, 'heartbeat_at', NOW_S, unpack(info))
  local gone = redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', NOW - 3600000, 'LIMIT', 0, 100)
  for _, w in ipairs(gone) do
    redis.call('ZREM', P .. 'workers', w)
    redis.call('DEL', P .. 'worker:' .. w)
  end
  if DL_TTL > 0 then
    redis.call('XTRIM', P .. 'dead', 'MINID', '~', math.floor(NOW - DL_TTL))
  end
  return extend_leases()  -- the leases to extend follow, as for 'extend'

elseif op == 'expire' then  -- a step of the heartbeat's sweep: at most n expired records
  return expire_results(num())

elseif op == 'unregister' then
  local id = arg()
  redis.call('ZREM', P .. 'workers', id)
  redis.call('DEL', P .. 'worker:' .. id)
  return 0

elseif op == 'workers' then  -- live workers: id, then 10 fields each (see protocol.workers)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'workers', '(' .. NOW, '+inf')
  local out = {}
  for _, id in ipairs(ids) do
    local w = redis.call('HMGET', P .. 'worker:' .. id, 'hostname', 'pid', 'started_at',
      'heartbeat_at', 'concurrency', 'queues', 'running', 'finished', 'failed', 'busy_seconds')
    out[#out + 1] = id
    for i = 1, 10 do out[#out + 1] = w[i] or '' end
    if out[#out - 8] == '' then out[#out - 8] = '0' end  -- pid
  end
  return out

elseif op == 'mark_running' then  -- uuid, holder pairs; returns the uuids that are final
  local n = num()
  local blocked = {}
  for _ = 1, n do
    local u, holder = arg(), arg()
    if set_running(u, holder) == 'final' then blocked[#blocked + 1] = u end
  end
  return blocked

elseif op == 'mark_queued' then
  local n = num()
  for _ = 1, n do
    local u, holder = arg(), arg()
    set_queued(u, holder)
  end
  return 0

elseif op == 'finish' then  -- the store role on its own: outcomes fenced by their holder
  CALL = arg()
  local n = num()
  local rejected = {}
  for i = 1, n do
    if not write_outcome(false) then rejected[#rejected + 1] = i end
  end
  expire_results(n * 2 + 10)
  return rejected

elseif op == 'watch' then  -- a listener's producer will wait for this record: add the
  -- listener's id to the record's waiters, and read the record
  local u, id = arg(), arg()
  local k = rkey(u)
  local cur = redis.call('HMGET', k, 'status', 'waiters')
  if not cur[1] then return {} end
  local waiters = cur[2]
  -- a final record announces nothing more: the reader has what it waits for
  if not FINAL[cur[1]] then
    if not waiters then
      redis.call('HSET', k, 'waiters', id)
    elseif not string.find(' ' .. waiters .. ' ', ' ' .. id .. ' ', 1, true) then
      redis.call('HSET', k, 'waiters', waiters .. ' ' .. id)
    end
  end
  return redis.call('HGETALL', k)

elseif op == 'cancel' then  -- fused flag, uuid, reason JSON
  local fused, u, reason = arg() == '1', arg(), arg()
  if not cancel_record(u, reason) then return 0 end
  if fused then
    local id = redis.call('HGET', P .. 'byuuid', u)
    if id then
      local m = redis.call('HMGET', mkey(id), 'q')
      if m[1] and not redis.call('ZSCORE', qkey(m[1], 'leased'), id) then
        redis.call('ZREM', qkey(m[1], 'ready'), id)
        redis.call('ZREM', qkey(m[1], 'delayed'), id)
        drop_message(id, u, m[1])
      end
    end
  end
  return 1

elseif op == 'discard' then
  local u = arg()
  local id = redis.call('HGET', P .. 'byuuid', u)
  if not id then return 0 end
  local q = redis.call('HGET', mkey(id), 'q')
  if not q or redis.call('ZSCORE', qkey(q, 'leased'), id) then return 0 end
  redis.call('ZREM', qkey(q, 'ready'), id)
  redis.call('ZREM', qkey(q, 'delayed'), id)
  drop_message(id, u, q)
  return 1

elseif op == 'purge' then  -- queue, batch size: waiting messages (ready, then delayed) dropped
  local q, n = arg(), num()
  local out = {}
  for _, part in ipairs({'ready', 'delayed'}) do
    if #out >= n then break end
    local ids = redis.call('ZRANGE', qkey(q, part), 0, n - #out - 1)
    for _, id in ipairs(ids) do
      redis.call('ZREM', qkey(q, part), id)
      local u = redis.call('HGET', mkey(id), 'u')
      drop_message(id, u, q, false)
      if u and u ~= '' then out[#out + 1] = u end
    end
  end
  return out

elseif op == 'delete_finished' then  -- age ms ('' = every final record), batch size
  local age, n = arg(), num()
  local cutoff = '+inf'
  if age ~= '' then cutoff = int(NOW - tonumber(age)) end
  local gone, seen = sweep(cutoff, n)
  return {gone, seen}

elseif op == 'stats' then  -- per queue: name, ready, delayed, leased; then records, dead letters
  local out = {}
  for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    out[#out + 1] = q
    out[#out + 1] = redis.call('ZCARD', qkey(q, 'ready'))
    out[#out + 1] = redis.call('ZCARD', qkey(q, 'delayed'))
    out[#out + 1] = redis.call('ZCARD', qkey(q, 'leased'))
  end
  return {out, redis.call('ZCARD', P .. 'ix:all'), redis.call('XLEN', P .. 'dead')}

elseif op == 'search' then
  -- status, task name, limit, before (whole us, '' = none), cursor created_at (us) and uuid ('' =
  -- none). Reads the most selective index there is (name, else status, else all), newest
  -- first, from just after the cursor: by its rank when the cursor's uuid is in that index,
  -- else by its score (ties at the cursor's score go by uuid, as the members are ordered).
  -- The status beside a name, and a queue, are checked on each record the index gives: at
  -- most SEARCH_BUDGET records are looked at per call then.
  local status, name, limit, before, c_at, c_uuid = arg(), arg(), num(), arg(), arg(), arg()
  local queue = arg()
  local key = (name ~= '' and (P .. 'ix:nm:' .. name))
    or (status ~= '' and (P .. 'ix:st:' .. status)) or (P .. 'ix:all')
  local wanted = {}
  if name ~= '' and status ~= '' then wanted.status = status end
  if queue ~= '' then wanted.queue = queue end
  local checks = next(wanted) ~= nil
  local out, seen = {}, 0
  local function take(members)
    for _, u in ipairs(members) do
      if #out >= limit * 2 or (checks and seen >= SEARCH_BUDGET) then return false end
      seen = seen + 1
      local fields = redis.call('HGETALL', rkey(u))
      local keep = #fields > 0
      if keep and checks then
        local found = {}
        for i = 1, #fields, 2 do
          if wanted[fields[i]] then found[fields[i]] = fields[i + 1] end
        end
        for field, value in pairs(wanted) do
          if found[field] ~= value then keep = false end
        end
      end
      if keep then
        out[#out + 1] = u
        out[#out + 1] = fields
      end
    end
    return true
  end
  local max = before ~= '' and ('(' .. before) or '+inf'
  local rank = c_uuid ~= '' and redis.call('ZREVRANK', key, c_uuid) or false
  if rank then
    local start = rank + 1
    while true do
      local chunk = redis.call('ZREVRANGE', key, start, start + 199, 'WITHSCORES')
      if #chunk == 0 then break end
      local members = {}
      for i = 1, #chunk, 2 do
        if before == '' or tonumber(chunk[i + 1]) < tonumber(before) then
          members[#members + 1] = chunk[i]
        end
      end
      if not take(members) then break end
      start = start + 200
    end
    return out
  end
  if c_at ~= '' then
    -- the cursor's uuid left this index: the ties at its score that sort after it, then older
    local ties = redis.call('ZREVRANGEBYSCORE', key, c_at, c_at)
    local after = {}
    for _, u in ipairs(ties) do if u < c_uuid then after[#after + 1] = u end end
    if not take(after) then return out end
    if before == '' or tonumber(c_at) < tonumber(before) then max = '(' .. c_at end
  end
  local offset = 0
  while true do
    local chunk = redis.call('ZREVRANGEBYSCORE', key, max, '-inf', 'LIMIT', offset, 200)
    if #chunk == 0 then break end
    offset = offset + #chunk
    if not take(chunk) then break end
  end
  return out

elseif op == 'flush' then  -- what: Q messages, S records, A both; in batches of n keys
  local what, n = arg(), num()
  local deleted = 0
  local function del_members(key, prefix)
    while deleted < n do
      local ids = redis.call('ZRANGE', key, 0, 499)
      if #ids == 0 then redis.call('DEL', key); return true end
      for _, id in ipairs(ids) do redis.call('DEL', prefix .. id) end
      redis.call('ZREM', key, unpack(ids))
      deleted = deleted + #ids
    end
    return false
  end
  if what ~= 'S' then
    for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
      for _, part in ipairs({'ready', 'delayed', 'leased'}) do
        if not del_members(qkey(q, part), P .. 'm:') then return 0 end
      end
      redis.call('DEL', qkey(q, 'wake'))
      redis.call('SREM', P .. 'queues', q)
    end
    redis.call('DEL', P .. 'byuuid')
  end
  if what ~= 'Q' then
    if not del_members(P .. 'ix:all', P .. 'r:') then return 0 end
    for _, s in ipairs(STATUSES) do redis.call('DEL', P .. 'ix:st:' .. s) end
    for _, n in ipairs(redis.call('SMEMBERS', P .. 'names')) do
      redis.call('DEL', P .. 'ix:nm:' .. n)
    end
    redis.call('DEL', P .. 'names')
    redis.call('DEL', P .. 'done', P .. 'dead')
  end
  return 1
end

return redis.error_reply('qtasks: unknown operation ' .. tostring(op))
end

-- The entry point (`protocol.py` registers it, or calls it at the end of the script form).
local function qtasks(keys, args)  -- luacheck: ignore keys (it routes the call only)
  begin(args)
  local result = dispatch(args[2])
  flush()
  return result
end

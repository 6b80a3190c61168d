/*
 * durable_redis_script.c - the one Lua script behind every operation of the
 * Redis engine (durable_redis.c loads it with SCRIPT LOAD and calls it with
 * EVALSHA), kept apart from the engine's C so each reads on its own.
 */
#include "faas_int.h"

#if FAAS_WITH_REDIS

#include "durable_redis.h"

/*
 * One script for every operation: ARGV[1] the prefix, ARGV[2] the kind,
 * the rest the kind's. Returns 1 (done), 0 (a put found another record
 * under its key, an attempt found its event gone: FAAS_EEXIST) or -1 (a
 * put found its function's queue full: FAAS_ETHROTTLED); the queue's own
 * kinds (group, due, takeover, mine, touch) answer an array led by 0, then
 * the events they hand to this host, each its hash's fields.
 */
const char faas_durable_redis_script[] =
    "local P, kind = ARGV[1], ARGV[2]\n"
    /* a put or an end sent again after a lost connection (putr, endr) may
     * have been applied: its put looks for the event first */
    "local resent = kind == 'putr' or kind == 'endr'\n"
    "if resent then kind = kind:sub(1, -2) end\n"
    "local function q(fn) return P..':q:'..fn end\n"
    /* the function's consumer group, made when missing (a server that
     * lost its data): its "already exists" error is ignored */
    "local function group(fn)\n"
    "  redis.pcall('XGROUP', 'CREATE', q(fn), 'workers', '0', 'MKSTREAM')\n"
    "end\n"
    /* the event's current fields into a new entry of its function's stream */
    "local function enqueue(k, fn)\n"
    "  local id = redis.call('XADD', q(fn), '*', unpack(redis.call('HGETALL', k)))\n"
    "  redis.call('HSET', k, 'sid', id)\n"
    "end\n"
    /* the entry `sid` is pending for `node`: that host holds the event */
    "local function held_by(fn, sid, node)\n"
    "  if not sid or sid == '' then return false end\n"
    "  local p = redis.call('XPENDING', q(fn), 'workers', sid, sid, 1)\n"
    "  return p[1] ~= nil and p[1][2] == node\n"
    "end\n"
    /* its entry leaves the stream (acknowledged, deleted) */
    "local function unqueue(k, fn)\n"
    "  local sid = redis.call('HGET', k, 'sid')\n"
    "  if sid and sid ~= '' then\n"
    "    redis.call('XACK', q(fn), 'workers', sid)\n"
    "    redis.call('XDEL', q(fn), sid)\n"
    "    redis.call('HSET', k, 'sid', '')\n"
    "  end\n"
    "end\n"
    /* put(i): rid, function, accepted_ms, origin, max events (entries in
     * the stream, waiting or taken: retries do not count), max bytes (of
     * every kept event), the pairs' count, the pairs. 1, 0 (another event
     * under the id) or -1 (the function's queue is full fleet-wide) */
    "local function put(i)\n"
    "  local rid, fn, acc, org = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]\n"
    "  local maxn, maxb, n = tonumber(ARGV[i+4]), tonumber(ARGV[i+5]), tonumber(ARGV[i+6])\n"
    "  local k = P..':ev:'..rid\n"
    "  if resent then\n"
    "    local ex = redis.call('HMGET', k, 'accepted_ms', 'origin')\n"
    "    if ex[1] then\n"
    "      if ex[1] == acc and ex[2] == org then return 1 end\n"
    "      return 0\n"
    "    end\n"
    "  end\n"
    "  local bytes = #(ARGV[i+8] or '')\n"
    "  local qb = P..':qbytes:'..fn\n"
    "  if maxn > 0 and redis.call('XLEN', q(fn)) >= maxn then return -1 end\n"
    "  if redis.call('INCRBY', qb, bytes) > maxb and maxb > 0 then\n"
    "    redis.call('DECRBY', qb, bytes)\n"
    "    return -1\n"
    "  end\n"
    /* the entry carries what a host runs the event with; the hash also
     * what the fleet keeps about it */
    "  local id = redis.call('XADD', q(fn), '*', 'rid', rid, 'accepted_ms', acc,\n"
    "                        unpack(ARGV, i+7, i+6+n))\n"
    "  redis.call('HSET', k, 'sid', id, 'rid', rid, 'function', fn, 'accepted_ms', acc,\n"
    "             'origin', org, 'bytes', bytes, unpack(ARGV, i+7, i+6+n))\n"
    "  return 1\n"
    "end\n"
    "if kind == 'put' then return put(3) end\n"
    /* an event that ended meanwhile has no fields: both are new, and the
     * hash they made goes */
    "if kind == 'attempt' then\n"
    "  local k = P..':ev:'..ARGV[3]\n"
    "  if redis.call('HSET', k, 'attempts', ARGV[4], 'node', ARGV[5]) == 2 then\n"
    "    redis.call('DEL', k)\n"
    "    return 0\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    /* a retry waits in the function's sorted set, out of the stream;
     * a release goes back to the stream for any host.
     * retry: ARGV[3] rid, [4] due, [5] node; release: [4] the attempts
     * that ran, [5] node. Only while this host holds the event: sent again
     * after a lost connection, or after another host took it over, they
     * leave it alone. */
    "if kind == 'retry' or kind == 'release' then\n"
    "  local k = P..':ev:'..ARGV[3]\n"
    "  local f = redis.call('HMGET', k, 'function', 'sid')\n"
    "  if not f[1] or not held_by(f[1], f[2], ARGV[5]) then return 1 end\n"
    "  unqueue(k, f[1])\n"
    "  if kind == 'retry' then\n"
    "    redis.call('HSET', k, 'due_ms', ARGV[4])\n"
    "    redis.call('ZADD', P..':retry:'..f[1], ARGV[4], ARGV[3])\n"
    "  else\n"
    "    redis.call('HSET', k, 'attempts', ARGV[4])\n"
    "    enqueue(k, f[1])\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    /* a retry id left in the sorted set is dropped when it comes due */
    "if kind == 'end' then\n"
    "  local k = P..':ev:'..ARGV[3]\n"
    "  local f = redis.call('HMGET', k, 'function', 'bytes', 'sid')\n"
    "  if f[1] then\n"
    "    if f[3] and f[3] ~= '' then\n"
    "      redis.call('XACK', q(f[1]), 'workers', f[3])\n"
    "      redis.call('XDEL', q(f[1]), f[3])\n"
    "    end\n"
    "    redis.call('DECRBY', P..':qbytes:'..f[1], tonumber(f[2] or '0'))\n"
    "    redis.call('DEL', k)\n"
    "  end\n"
    "  if ARGV[4] then return put(4) end\n"
    "  return 1\n"
    "end\n"
    /* the fleet's queue of a function: its consumer group */
    "if kind == 'group' then\n"
    "  group(ARGV[3])\n"
    "  return {0}\n"
    "end\n"
    /* retries now due go back to the stream, each once */
    "if kind == 'due' then\n"
    "  local z = P..':retry:'..ARGV[3]\n"
    "  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[4], 'LIMIT', 0, 1000)\n"
    "  for _, rid in ipairs(ids) do\n"
    "    redis.call('ZREM', z, rid)\n"
    "    local k = P..':ev:'..rid\n"
    "    if redis.call('EXISTS', k) == 1 then enqueue(k, ARGV[3]) end\n"
    "  end\n"
    "  return {0}\n"
    "end\n"
    /* the current fields of the events behind stream entries `ids`;
     * entries whose event ended (or moved on) leave the stream */
    "local function events_of(fn, ids, release)\n"
    "  local out = {0}\n"
    "  for _, id in ipairs(ids) do\n"
    "    local e = redis.call('XRANGE', q(fn), id, id)\n"
    "    local rid\n"
    "    if e[1] then\n"
    "      for j = 1, #e[1][2], 2 do if e[1][2][j] == 'rid' then rid = e[1][2][j+1] end end\n"
    "    end\n"
    "    local k = rid and P..':ev:'..rid\n"
    "    if k and redis.call('HGET', k, 'sid') == id then\n"
    "      if release then\n"
    "        unqueue(k, fn)\n"
    "        enqueue(k, fn)\n"
    "      else\n"
    "        out[#out + 1] = redis.call('HGETALL', k)\n"
    "      end\n"
    "    else\n"
    "      redis.call('XACK', q(fn), 'workers', id)\n"
    "      redis.call('XDEL', q(fn), id)\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    /* takeover: ARGV[3] function, [4] node, [5] min idle ms, [6] count,
     * [7] where to look from (the cursor the last one answered): the
     * leases of hosts silent that long become this host's */
    "if kind == 'takeover' or kind == 'mine' or kind == 'leave' or kind == 'touch' then\n"
    "  group(ARGV[3])\n"
    "end\n"
    "if kind == 'takeover' then\n"
    "  local r = redis.call('XAUTOCLAIM', q(ARGV[3]), 'workers', ARGV[4], ARGV[5], ARGV[7],\n"
    "                       'COUNT', ARGV[6], 'JUSTID')\n"
    "  local out = events_of(ARGV[3], r[2])\n"
    "  table.insert(out, 2, r[1])\n"
    "  return out\n"
    "end\n"
    /* mine: what the stream holds for this node already (a restart under
     * the same node id, a delivery whose answer was lost); leave: the
     * same, put back in the stream for any host (this host closes).
     * ARGV[3] function, [4] node, [5] count */
    "if kind == 'mine' or kind == 'leave' then\n"
    "  local ids = {}\n"
    "  for _, p in ipairs(redis.call('XPENDING', q(ARGV[3]), 'workers', '-', '+', ARGV[5],\n"
    "                                ARGV[4])) do\n"
    "    ids[#ids + 1] = p[1]\n"
    "  end\n"
    "  return events_of(ARGV[3], ids, kind == 'leave')\n"
    "end\n"
    /* touch: ARGV[3] function, [4] node, then request ids this host holds:
     * their leases are renewed while they are still this node's */
    "if kind == 'touch' then\n"
    "  for i = 5, #ARGV do\n"
    "    local sid = redis.call('HGET', P..':ev:'..ARGV[i], 'sid')\n"
    "    if held_by(ARGV[3], sid, ARGV[4]) then\n"
    "      redis.call('XCLAIM', q(ARGV[3]), 'workers', ARGV[4], 0, sid, 'JUSTID')\n"
    "    end\n"
    "  end\n"
    "  return {0}\n"
    "end\n"
    /* every kept event's fields (a load at set-up: not on the hot path) */
    "if kind == 'events' then\n"
    "  local out, cur = {0}, '0'\n"
    "  repeat\n"
    "    local r = redis.call('SCAN', cur, 'MATCH', P..':ev:*', 'COUNT', 1000)\n"
    "    cur = r[1]\n"
    "    for _, k in ipairs(r[2]) do out[#out + 1] = redis.call('HGETALL', k) end\n"
    "  until cur == '0'\n"
    "  return out\n"
    "end\n"
    /* a host-fed mapping's records are this host's: ARGV[3] its node,
     * [4] the mapping, then the record's */
    "if kind == 'rput' then\n"
    "  local m = ARGV[3]..':'..ARGV[4]\n"
    "  local k = P..':rec:'..m..':'..ARGV[5]\n"
    "  local had = redis.call('HGET', k, 'arrived_ms')\n"
    "  if had then return had == ARGV[6] and 1 or 0 end\n"
    "  redis.call('HSET', k, 'arrived_ms', ARGV[6], 'record', ARGV[7])\n"
    "  if ARGV[8] then redis.call('HSET', k, 'key', ARGV[8]) end\n"
    "  redis.call('ZADD', P..':recs:'..m, ARGV[5], ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "if kind == 'rdel' then\n"
    "  local m = ARGV[3]..':'..ARGV[4]\n"
    "  redis.call('DEL', P..':rec:'..m..':'..ARGV[5])\n"
    "  redis.call('ZREM', P..':recs:'..m, ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "if kind == 'sched' then\n"
    "  redis.call('HSET', P..':sched', ARGV[3], ARGV[4])\n"
    "  return 1\n"
    "end\n"
    "if kind == 'claim' then\n"
    "  local due, last = tonumber(ARGV[4]), tonumber(redis.call('HGET', P..':sched', ARGV[3]))\n"
    "  if last and due - last < tonumber(ARGV[5]) then\n"
    "    if last ~= due or redis.call('HGET', P..':schednode', ARGV[3]) ~= ARGV[6] then\n"
    "      return {0, last}\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', P..':sched', ARGV[3], ARGV[4])\n"
    "  redis.call('HSET', P..':schednode', ARGV[3], ARGV[6])\n"
    "  return {1, due}\n"
    "end\n"
    "if kind == 'iset' then\n"
    "  local k = P..':idem:'..ARGV[3]..':'..ARGV[4]\n"
    "  redis.call('DEL', k)\n"
    "  redis.call('HSET', k, unpack(ARGV, 6, 5 + tonumber(ARGV[5])))\n"
    "  redis.call('ZADD', P..':idems:'..ARGV[3], redis.call('INCR', P..':seq'), ARGV[4])\n"
    "  return 1\n"
    "end\n"
    "if kind == 'idel' then\n"
    "  redis.call('DEL', P..':idem:'..ARGV[3]..':'..ARGV[4])\n"
    "  redis.call('ZREM', P..':idems:'..ARGV[3], ARGV[4])\n"
    "  return 1\n"
    "end\n"
    "if kind == 'isweep' then\n"
    "  local z = P..':idems:'..ARGV[3]\n"
    "  for _, key in ipairs(redis.call('ZRANGE', z, 0, -1)) do\n"
    "    local k = P..':idem:'..ARGV[3]..':'..key\n"
    "    local e = redis.call('HGET', k, 'expires_ms')\n"
    "    if not e or tonumber(e) <= tonumber(ARGV[4]) then\n"
    "      redis.call('DEL', k)\n"
    "      redis.call('ZREM', z, key)\n"
    "    end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    /* the shared idempotency store (durable_redis_store.c): ARGV[3] the
     * scope, [4] the key, [5] now_ms; answers {code, record fields} */
    "local function sread(k, now)\n"
    "  local f = redis.call('HMGET', k, 'state', 'status', 'payload', 'validation', 'owner',\n"
    "                       'expires_ms')\n"
    "  if not f[1] then return nil end\n"
    "  if tonumber(f[6]) <= now then redis.call('DEL', k) return nil end\n"
    "  return f\n"
    "end\n"
    "local function swrite(k, now, i)\n"
    "  redis.call('DEL', k)\n"
    "  redis.call('HSET', k, unpack(ARGV, i + 1, i + tonumber(ARGV[i])))\n"
    "  local f = sread(k, -1 / 0)\n"
    "  local ttl = tonumber(f[6]) - now + 60000\n"
    "  redis.call('PEXPIRE', k, ttl >= 1 and ttl or 1)\n"
    "  return {0, unpack(f)}\n"
    "end\n"
    "if kind:sub(1, 1) == 's' then\n"
    "  local k, now = P..':store:'..ARGV[3]..':'..ARGV[4], tonumber(ARGV[5])\n"
    "  local f = sread(k, now)\n"
    "  if kind == 'sget' then\n"
    "    if not f then return {-3} end\n"
    "    return {0, unpack(f)}\n"
    "  end\n"
    "  if kind == 'sput' then\n"
    "    if f then return {-4, unpack(f)} end\n"
    "    return swrite(k, now, 6)\n"
    "  end\n"
    "  local owner = ARGV[6]\n"
    "  if not f or (owner ~= '' and owner ~= f[5]) then return {-3} end\n"
    "  if kind == 'scomplete' then return swrite(k, now, 7) end\n"
    "  redis.call('DEL', k)\n"
    "  return {0}\n"
    "end\n"
    "return 1\n";


#endif /* FAAS_WITH_REDIS */

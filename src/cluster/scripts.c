/* scripts: the shared store's Lua scripts (see scripts.h for the keys).
 * The argument layouts are written next to each script; cluster/limits.c
 * builds them. The per-request scripts (reserve, settle) take a batch of
 * requests (cluster/redis.h: one call for every request a worker loop turn
 * gathered). Scripts return arrays of integers (a Lua nil would cut an
 * array short). */
#include "cluster/scripts.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/str.h"

/* Shared by every script: the server's clock, the budget windows, holds
 * and their release, the sweep of holds past their expiry, GCRA. P (the
 * key prefix) is set by each script from its arguments. */
#define LUA_COMMON \
    "local t = redis.call('TIME')\n" \
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
    "local now_ms = math.floor(now / 1000)\n" \
    "local P = ''\n" \
    "local function wkey(scope, kind, period) return P .. 'b:' .. scope .. ':' .. kind .. ':' .. period end\n" \
    "local function ttl(kind) if kind == 'd' then return 259200 end return 6048000 end\n" \
    "local function num(v) return tonumber(v or '0') or 0 end\n" \
    "local function add(key, field, by, kind)\n" \
    "  local v = redis.call('HINCRBY', key, field, by)\n" \
    "  if v == by and by > 0 then redis.call('EXPIRE', key, ttl(kind)) end\n" \
    "  return v\n" \
    "end\n" \
    "local function split(s)\n" \
    "  local f = {}\n" \
    "  for w in string.gmatch(s, '%S+') do f[#f + 1] = w end\n" \
    "  return f\n" \
    "end\n" \
    "local function release(member)\n" \
    "  local f = split(member)\n" \
    "  local amount = tonumber(f[2]) or 0\n" \
    "  if amount > 0 and f[4] then\n" \
    "    for i = 6, math.min(5 + (tonumber(f[5]) or 0), #f) do\n" \
    "      redis.call('HINCRBY', wkey(f[i], 'd', f[3]), 'r', -amount)\n" \
    "      redis.call('HINCRBY', wkey(f[i], 'm', f[4]), 'r', -amount)\n" \
    "    end\n" \
    "  end\n" \
    "end\n" \
    "local function sweep()\n" \
    "  local due = redis.call('ZRANGEBYSCORE', P .. 'holds', '-inf', now_ms, 'LIMIT', 0, 8)\n" \
    "  if #due == 0 then return end\n" \
    "  for _, m in ipairs(due) do\n" \
    "    release(m)\n" \
    "    redis.call('ZREM', P .. 'holds', m)\n" \
    "    redis.call('ZADD', P .. 'swept', now_ms + 86400000, m)\n" \
    "  end\n" \
    "  redis.call('ZREMRANGEBYSCORE', P .. 'swept', '-inf', now_ms)\n" \
    "end\n" \
    "local function gcra(tat, limit, window, cost)\n" \
    "  if limit <= 0 then return {1, 0, 0, 0, 0, 0} end\n" \
    "  if cost < 0 then cost = 0 end\n" \
    "  if tat < now then tat = now end\n" \
    "  local inc = math.floor(window * cost / limit)\n" \
    "  if inc == 0 and cost > 0 then inc = 1 end\n" \
    "  local new = tat + inc\n" \
    "  if new - now <= window or (tat == now and cost > limit) then\n" \
    "    local left = window - (new - now)\n" \
    "    local rem = 0\n" \
    "    if left > 0 then rem = math.floor(left * limit / window) end\n" \
    "    return {1, limit, rem, new - now, 0, new}\n" \
    "  end\n" \
    "  local left = window - (tat - now)\n" \
    "  local rem = 0\n" \
    "  if left > 0 then rem = math.floor(left * limit / window) end\n" \
    "  return {0, limit, rem, tat - now, new - window - now, tat}\n" \
    "end\n" \
    "local function settime(key, tat)\n" \
    "  local ms = math.floor((tat - now) / 1000) + 1\n" \
    "  if ms > 0 then redis.call('SET', key, string.format('%d', tat), 'PX', ms) end\n" \
    "end\n" \
    "local function tokens_adjust(who, limit, delta)\n" \
    "  if who == '' or limit <= 0 or delta == 0 then return end\n" \
    "  local key = P .. 'tpm:' .. who\n" \
    "  local tat = num(redis.call('GET', key))\n" \
    "  local d = delta\n" \
    "  if d < 0 then d = -d end\n" \
    "  local inc = math.floor(60000000 * d / limit)\n" \
    "  if inc == 0 then inc = 1 end\n" \
    "  if delta > 0 then\n" \
    "    if tat < now then tat = now end\n" \
    "    settime(key, tat + inc)\n" \
    "  elseif tat - inc > now then settime(key, tat - inc)\n" \
    "  else redis.call('DEL', key) end\n" \
    "end\n"

/* Runs `entry` on each request of a batch. ARGV: n, then for each request
 * its argument count k and its k arguments (A[1..k], A[1] = P). Reply: one
 * array per request. */
#define LUA_BATCH \
    "local out = {}\n" \
    "local a = 2\n" \
    "for i = 1, tonumber(ARGV[1]) do\n" \
    "  local k = tonumber(ARGV[a])\n" \
    "  local A = {}\n" \
    "  for j = 1, k do A[j] = ARGV[a + j] end\n" \
    "  a = a + k + 1\n" \
    "  P = A[1]\n" \
    "  out[i] = entry(A)\n" \
    "end\n" \
    "return out\n"

/* A request's arguments (A):
 *   P, hold member ("request_id amount day month n_held held_scope..."),
 *   hold_ms, n_asks, {who, per_hour, per_minute} x n_asks,
 *   tpm_who ('' = none), tpm_limit, est_tokens,
 *   amount, day, month, n_scopes, {scope, daily_limit, monthly_limit} x n_scopes
 * Its reply: {code, index, monthly,
 *   {allowed, limit, remaining, reset_us, retry_us} x n_asks (the tighter of
 *   hour and minute, or the refusing one),
 *   tokens {allowed, limit, remaining, reset_us, retry_us},
 *   {day_spent, month_spent} x n_scopes (-1: not read, the scope has no limit)}
 * code: 0 admitted, 1 request limit (index = ask), 2 tokens per minute,
 *   3 budget (index = scope, monthly 0/1). A refused request limit charges
 *   nothing; a later refusal leaves the request limits charged (as the
 *   node-local path does). An admitted request's hold is the member in
 *   P holds (scored by its expiry): its reservation on every scope with a
 *   limit. */
static const char reserve_lua[] = LUA_COMMON
    "local swept = false\n"
    "local function entry(A)\n"
    "  if not swept then sweep(); swept = true end\n"
    "  local member, hold_ms, n_asks = A[2], tonumber(A[3]), tonumber(A[4])\n"
    "  local a = 5\n"
    "  local out = {0, 0, 0}\n"
    "  local decided = {}\n"
    "  local code, index = 0, 0\n"
    "  for i = 1, n_asks do\n"
    "    local who, ph, pm = A[a], tonumber(A[a + 1]), tonumber(A[a + 2])\n"
    "    a = a + 3\n"
    "    if code == 0 then\n"
    "      local hk, mk = P .. 'rl:' .. who .. ':h', P .. 'rl:' .. who .. ':m'\n"
    "      local tats = redis.call('MGET', hk, mk)\n"
    "      local h = gcra(num(tats[1]), ph, 3600000000, 1)\n"
    "      local m = gcra(num(tats[2]), pm, 60000000, 1)\n"
    "      local shown = h\n"
    "      if h[1] == 0 then shown = h elseif m[1] == 0 then shown = m\n"
    "      elseif m[2] > 0 and (h[2] == 0 or m[3] < h[3]) then shown = m end\n"
    "      if h[1] == 1 and m[1] == 1 then\n"
    "        if ph > 0 then settime(hk, h[6]) end\n"
    "        if pm > 0 then settime(mk, m[6]) end\n"
    "      else code, index = 1, i - 1 end\n"
    "      decided[i] = shown\n"
    "    else decided[i] = {0, 0, 0, 0, 0} end\n"
    "  end\n"
    "  for i = 1, n_asks do for j = 1, 5 do out[#out + 1] = decided[i][j] end end\n"
    "  local tpm_who, tpm_limit, est = A[a], tonumber(A[a + 1]), tonumber(A[a + 2])\n"
    "  a = a + 3\n"
    "  local tk = {1, 0, 0, 0, 0, 0}\n"
    "  if code == 0 and tpm_who ~= '' and tpm_limit > 0 then\n"
    "    tk = gcra(num(redis.call('GET', P .. 'tpm:' .. tpm_who)), tpm_limit, 60000000, est)\n"
    "    if tk[1] == 0 then code = 2 end\n"
    "  end\n"
    "  for j = 1, 5 do out[#out + 1] = tk[j] end\n"
    "  local amount, day, month, n = tonumber(A[a]), A[a + 1], A[a + 2], tonumber(A[a + 3])\n"
    "  a = a + 4\n"
    "  local scopes = {}\n"
    "  for i = 1, n do\n"
    "    local s = {name = A[a], dl = tonumber(A[a + 1]), ml = tonumber(A[a + 2]), ds = -1, ms = -1}\n"
    "    a = a + 3\n"
    "    if s.dl > 0 or s.ml > 0 then\n"
    "      s.dk, s.mk = wkey(s.name, 'd', day), wkey(s.name, 'm', month)\n"
    "      local d, m = redis.call('HMGET', s.dk, 's', 'r'), redis.call('HMGET', s.mk, 's', 'r')\n"
    "      s.ds, s.ms = num(d[1]), num(m[1])\n"
    "      if code == 0 then\n"
    "        if s.dl > 0 and s.ds + num(d[2]) + amount > s.dl then code, index = 3, i - 1\n"
    "        elseif s.ml > 0 and s.ms + num(m[2]) + amount > s.ml then\n"
    "          code, index, out[3] = 3, i - 1, 1 end\n"
    "      end\n"
    "    end\n"
    "    scopes[i] = s\n"
    "  end\n"
    "  if code == 0 then\n"
    "    if tk[6] > 0 then settime(P .. 'tpm:' .. tpm_who, tk[6]) end\n"
    "    if amount > 0 then\n"
    "      for i = 1, n do\n"
    "        local s = scopes[i]\n"
    "        if s.dk then\n"
    "          add(s.dk, 'r', amount, 'd')\n"
    "          add(s.mk, 'r', amount, 'm')\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    redis.call('ZADD', P .. 'holds', now_ms + hold_ms, member)\n"
    "  end\n"
    "  out[1], out[2] = code, index\n"
    "  for i = 1, n do out[#out + 1] = scopes[i].ds; out[#out + 1] = scopes[i].ms end\n"
    "  return out\n"
    "end\n"
    LUA_BATCH;

/* A request's arguments (A):
 *   P, hold member (as reserved), cost, first_cost, day, month, tpm_who,
 *   tpm_limit, tpm_delta, n_scopes, scope x n_scopes
 * Applies only while the hold is listed (in P holds, or in P swept when its
 * expiry passed first: then the reservation was released already), so a
 * retry after a lost answer counts nothing twice: releases the reservation,
 * adds the cost (first_cost to the first scope), corrects the token count.
 * Its reply: {applied 0/1, {day_spent, month_spent} x n_scopes (-1: not
 * written)}. */
static const char settle_lua[] = LUA_COMMON
    "local function entry(A)\n"
    "  local member, cost, first = A[2], tonumber(A[3]), tonumber(A[4])\n"
    "  local day, month = A[5], A[6]\n"
    "  local n = tonumber(A[10])\n"
    "  local out = {0}\n"
    "  local seeds = {}\n"
    "  local held = redis.call('ZREM', P .. 'holds', member) == 1\n"
    "  if held then release(member) end\n"
    "  if held or redis.call('ZREM', P .. 'swept', member) == 1 then\n"
    "    for i = 1, n do\n"
    "      local c = cost\n"
    "      if i == 1 then c = first end\n"
    "      if c > 0 then\n"
    "        seeds[i] = {add(wkey(A[10 + i], 'd', day), 's', c, 'd'), add(wkey(A[10 + i], 'm', month), 's', c, 'm')}\n"
    "      end\n"
    "    end\n"
    "    tokens_adjust(A[7], tonumber(A[8]), tonumber(A[9]))\n"
    "    out[1] = 1\n"
    "  end\n"
    "  for i = 1, n do\n"
    "    local s = seeds[i] or {-1, -1}\n"
    "    out[#out + 1] = s[1]\n"
    "    out[#out + 1] = s[2]\n"
    "  end\n"
    "  return out\n"
    "end\n"
    LUA_BATCH;

/* ARGV: P, batch_id, n, {scope, kind 'd'|'m', period, amount} x n
 * Adds spend counted node-locally while Redis was down, once per batch id
 * (a retry after a lost answer adds nothing). Reply: {applied 0/1}. */
static const char reconcile_lua[] = LUA_COMMON
    "P = ARGV[1]\n"
    "if not redis.call('SET', P .. 'rc:' .. ARGV[2], '1', 'NX', 'EX', 2592000) then return {0} end\n"
    "for i = 0, tonumber(ARGV[3]) - 1 do\n"
    "  local b = 4 + i * 4\n"
    "  add(wkey(ARGV[b], ARGV[b + 1], ARGV[b + 2]), 's', tonumber(ARGV[b + 3]), ARGV[b + 1])\n"
    "end\n"
    "return {1}\n";

/* ARGV: P, hold member... Releases and drops those holds (their requests
 * went on with node-local counters). Reply: {released}. */
static const char release_lua[] = LUA_COMMON
    "P = ARGV[1]\n"
    "local done = 0\n"
    "for i = 2, #ARGV do\n"
    "  if redis.call('ZREM', P .. 'holds', ARGV[i]) == 1 then\n"
    "    release(ARGV[i])\n"
    "    done = done + 1\n"
    "  end\n"
    "  redis.call('ZREM', P .. 'swept', ARGV[i])\n"
    "end\n"
    "return {done}\n";

/* ARGV: P, hash_hex, record_json. Reply: {version}. */
static const char keyput_lua[] = "local P = ARGV[1]\n"
    "redis.call('HSET', P .. 'keys', ARGV[2], ARGV[3])\n"
    "return {redis.call('INCR', P .. 'keys:ver')}\n";

/* ARGV: P, day, month. Reply: {keys version, the gateway's day spent, its
 * month spent}: the watcher's poll (and probe), every turn; it sweeps
 * expired holds too. */
static const char poll_lua[] = LUA_COMMON
    "P = ARGV[1]\n"
    "sweep()\n"
    "local d = redis.call('HGET', wkey('g', 'd', ARGV[2]), 's')\n"
    "local m = redis.call('HGET', wkey('g', 'm', ARGV[3]), 's')\n"
    "return {num(redis.call('GET', P .. 'keys:ver')), num(d), num(m)}\n";

/* ARGV: P, a fresh salt (hex). Reply: the salt in force (a bulk string). */
static const char keysalt_lua[] = "local P = ARGV[1]\n"
    "redis.call('SET', P .. 'keys:salt', ARGV[2], 'NX')\n"
    "return redis.call('GET', P .. 'keys:salt')\n";

static const char *const texts[SCRIPT_COUNT] = {reserve_lua, settle_lua, reconcile_lua,
                                                release_lua, keyput_lua, keysalt_lua,
                                                poll_lua};
static char shas[SCRIPT_COUNT][41];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void compute_shas(void)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)texts[i], strlen(texts[i]), d);
        str_hex(d, SHA_DIGEST_LENGTH, shas[i]);
    }
}

int scripts_count(void)
{
    return SCRIPT_COUNT;
}

const char *scripts_text(int i)
{
    return texts[i];
}

const char *scripts_sha(int i)
{
    pthread_once(&once, compute_shas);
    return shas[i];
}

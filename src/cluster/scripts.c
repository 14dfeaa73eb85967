/* scripts: the shared store's Lua scripts (see scripts.h for the keys).
 * The ARGV layouts are written next to each script; cluster/limits.c builds
 * them. Scripts return arrays of integers only (a Lua nil would cut an
 * array short). */
#include "cluster/scripts.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Shared by every script: the server clock and the window helpers. */
#define LUA_COMMON                                                                           \
    "local P = ARGV[1]\n"                                                                    \
    "local t = redis.call('TIME')\n"                                                         \
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"                                \
    "local function wkey(scope, kind, period) return P .. 'b:' .. scope .. ':' .. kind .. "  \
    "':' .. period end\n"                                                                    \
    "local function ttl(kind) if kind == 'd' then return 259200 end return 6048000 end\n"    \
    "local function hnum(key, field) return tonumber(redis.call('HGET', key, field) or '0') " \
    "or 0 end\n"                                                                             \
    /* releases the reservation a hold describes: 'amount day month n s1..sn' */           \
    "local function release(h)\n"                                                            \
    "  local f = {}\n"                                                                       \
    "  for w in string.gmatch(h, '%S+') do f[#f + 1] = w end\n"                              \
    "  local amount = tonumber(f[1])\n"                                                      \
    "  if amount and amount > 0 then\n"                                                      \
    "    for i = 5, 4 + tonumber(f[4]) do\n"                                                 \
    "      redis.call('HINCRBY', wkey(f[i], 'd', f[2]), 'r', -amount)\n"                     \
    "      redis.call('HINCRBY', wkey(f[i], 'm', f[3]), 'r', -amount)\n"                     \
    "    end\n"                                                                              \
    "  end\n"                                                                                \
    "end\n"                                                                                  \
    /* holds past their expiry (their node died mid-request): released, and  \
     * marked so that a late settlement still adds its cost, once */        \
    "local function sweep()\n"                                                               \
    "  local due = redis.call('ZRANGEBYSCORE', P .. 'holds', '-inf', math.floor(now / 1000), " \
    "'LIMIT', 0, 8)\n"                                                                       \
    "  for _, id in ipairs(due) do\n"                                                        \
    "    local h = redis.call('GET', P .. 'hold:' .. id)\n"                                  \
    "    if h and string.sub(h, 1, 1) ~= 'x' then\n"                                         \
    "      release(h)\n"                                                                     \
    "      redis.call('SET', P .. 'hold:' .. id, 'x' .. h, 'KEEPTTL')\n"                     \
    "    end\n"                                                                              \
    "    redis.call('ZREM', P .. 'holds', id)\n"                                             \
    "  end\n"                                                                                \
    "end\n"                                                                                  \
    /* GCRA, as security/ratelimit.c: {allowed, limit, remaining, reset, retry, tat} */     \
    "local function gcra(key, limit, window, cost)\n"                                        \
    "  if limit <= 0 then return {1, 0, 0, 0, 0, 0} end\n"                                   \
    "  if cost < 0 then cost = 0 end\n"                                                      \
    "  local tat = tonumber(redis.call('GET', key) or '0') or 0\n"                           \
    "  if tat < now then tat = now end\n"                                                    \
    "  local inc = math.floor(window * cost / limit)\n"                                      \
    "  if inc == 0 and cost > 0 then inc = 1 end\n"                                          \
    "  local new = tat + inc\n"                                                              \
    "  if new - now <= window or (tat == now and cost > limit) then\n"                       \
    "    local left = window - (new - now)\n"                                                \
    "    local rem = 0\n"                                                                    \
    "    if left > 0 then rem = math.floor(left * limit / window) end\n"                     \
    "    return {1, limit, rem, new - now, 0, new}\n"                                        \
    "  end\n"                                                                                \
    "  local left = window - (tat - now)\n"                                                  \
    "  local rem = 0\n"                                                                      \
    "  if left > 0 then rem = math.floor(left * limit / window) end\n"                       \
    "  return {0, limit, rem, tat - now, new - window - now, tat}\n"                         \
    "end\n"                                                                                  \
    "local function settime(key, tat)\n"                                                     \
    "  local ms = math.floor((tat - now) / 1000) + 1\n"                                      \
    "  if ms > 0 then redis.call('SET', key, string.format('%d', tat), 'PX', ms) end\n"     \
    "end\n"                                                                                  \
    "local function tokens_adjust(who, limit, delta)\n"                                      \
    "  if who == '' or limit <= 0 or delta == 0 then return end\n"                           \
    "  local key = P .. 'tpm:' .. who\n"                                                     \
    "  local tat = tonumber(redis.call('GET', key) or '0') or 0\n"                           \
    "  local d = delta\n"                                                                    \
    "  if d < 0 then d = -d end\n"                                                           \
    "  local inc = math.floor(60000000 * d / limit)\n"                                       \
    "  if inc == 0 then inc = 1 end\n"                                                       \
    "  if delta > 0 then\n"                                                                  \
    "    if tat < now then tat = now end\n"                                                  \
    "    settime(key, tat + inc)\n"                                                          \
    "  elseif tat - inc > now then settime(key, tat - inc)\n"                                \
    "  else redis.call('DEL', key) end\n"                                                    \
    "end\n"

/* ARGV: P, request_id, hold_ms, n_asks, {who, per_hour, per_minute} x n_asks,
 *       tpm_who ('' = none), tpm_limit, est_tokens,
 *       amount, day, month, n_scopes, {scope, daily_limit, monthly_limit} x n_scopes
 * Reply: {code, index, monthly,
 *         {allowed, limit, remaining, reset_us, retry_us} x n_asks (the
 *         tighter of hour and minute, or the refusing one),
 *         tpm {allowed, limit, remaining, reset_us, retry_us},
 *         {day_spent, month_spent} x n_scopes}
 * code: 0 admitted, 1 request limit (index = ask), 2 tokens per minute,
 *       3 budget (index = scope, monthly 0/1). Refused request limits charge
 *       nothing; a later refusal leaves the request limits charged (as the
 *       node-local path does). */
static const char reserve_lua[] = LUA_COMMON
    "sweep()\n"
    "local id = ARGV[2]\n"
    "local hold_ms = tonumber(ARGV[3])\n"
    "local n_asks = tonumber(ARGV[4])\n"
    "local a = 5\n"
    "local out = {0, 0, 0}\n"
    "local decided = {}\n"
    "local code, index = 0, 0\n"
    "for i = 1, n_asks do\n"
    "  local who, ph, pm = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  a = a + 3\n"
    "  if code == 0 then\n"
    "    local h = gcra(P .. 'rl:' .. who .. ':h', ph, 3600000000, 1)\n"
    "    local m = gcra(P .. 'rl:' .. who .. ':m', pm, 60000000, 1)\n"
    "    local shown = h\n"
    "    if h[1] == 0 then shown = h elseif m[1] == 0 then shown = m\n"
    "    elseif m[2] > 0 and (h[2] == 0 or m[3] < h[3]) then shown = m end\n"
    "    if h[1] == 1 and m[1] == 1 then\n"
    "      if ph > 0 then settime(P .. 'rl:' .. who .. ':h', h[6]) end\n"
    "      if pm > 0 then settime(P .. 'rl:' .. who .. ':m', m[6]) end\n"
    "    else code, index = 1, i - 1 end\n"
    "    decided[i] = shown\n"
    "  else decided[i] = {0, 0, 0, 0, 0} end\n"
    "end\n"
    "for i = 1, n_asks do for j = 1, 5 do out[#out + 1] = decided[i][j] end end\n"
    "local tpm_who, tpm_limit, est = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "a = a + 3\n"
    "local tk = {1, 0, 0, 0, 0, 0}\n"
    "if code == 0 and tpm_who ~= '' and tpm_limit > 0 then\n"
    "  tk = gcra(P .. 'tpm:' .. tpm_who, tpm_limit, 60000000, est)\n"
    "  if tk[1] == 0 then code = 2 end\n"
    "end\n"
    "for j = 1, 5 do out[#out + 1] = tk[j] end\n"
    "local amount, day, month, n = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])\n"
    "a = a + 4\n"
    "local scopes = {}\n"
    "for i = 1, n do\n"
    "  local s = {name = ARGV[a], dl = tonumber(ARGV[a + 1]), ml = tonumber(ARGV[a + 2])}\n"
    "  a = a + 3\n"
    "  s.dk, s.mk = wkey(s.name, 'd', day), wkey(s.name, 'm', month)\n"
    "  s.ds, s.ms = hnum(s.dk, 's'), hnum(s.mk, 's')\n"
    "  if code == 0 then\n"
    "    if s.dl > 0 and s.ds + hnum(s.dk, 'r') + amount > s.dl then code, index = 3, i - 1\n"
    "    elseif s.ml > 0 and s.ms + hnum(s.mk, 'r') + amount > s.ml then\n"
    "      code, index, out[3] = 3, i - 1, 1 end\n"
    "  end\n"
    "  scopes[i] = s\n"
    "end\n"
    "if code == 0 then\n"
    "  if tk[6] > 0 then settime(P .. 'tpm:' .. tpm_who, tk[6]) end\n"
    "  local held = {}\n"
    "  for i = 1, n do\n"
    "    local s = scopes[i]\n"
    "    if (s.dl > 0 or s.ml > 0) and amount > 0 then\n"
    "      redis.call('HINCRBY', s.dk, 'r', amount)\n"
    "      redis.call('EXPIRE', s.dk, ttl('d'))\n"
    "      redis.call('HINCRBY', s.mk, 'r', amount)\n"
    "      redis.call('EXPIRE', s.mk, ttl('m'))\n"
    "      held[#held + 1] = s.name\n"
    "    end\n"
    "  end\n"
    "  local h = string.format('%d', amount) .. ' ' .. day .. ' ' .. month .. ' ' .. #held\n"
    "  for _, name in ipairs(held) do h = h .. ' ' .. name end\n"
    "  redis.call('SET', P .. 'hold:' .. id, h, 'EX', 86400)\n"
    "  redis.call('ZADD', P .. 'holds', math.floor(now / 1000) + hold_ms, id)\n"
    "end\n"
    "out[1], out[2] = code, index\n"
    "for i = 1, n do out[#out + 1] = scopes[i].ds; out[#out + 1] = scopes[i].ms end\n"
    "return out\n";

/* ARGV: P, request_id, cost, first_cost, day, month, tpm_who, tpm_limit,
 *       tpm_delta, n_scopes, scope x n_scopes
 * Applies only while the request's hold exists (so a retry after a lost
 * answer counts nothing twice): releases the reservation (unless the sweep
 * already did), adds the cost (first_cost to the first scope), corrects the
 * token count. Reply: {applied 0/1, {day_spent, month_spent} x n_scopes}. */
static const char settle_lua[] = LUA_COMMON
    "local id = ARGV[2]\n"
    "local cost, first, day, month = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]\n"
    "local n = tonumber(ARGV[10])\n"
    "local out = {0}\n"
    "local h = redis.call('GET', P .. 'hold:' .. id)\n"
    "if h then\n"
    "  if string.sub(h, 1, 1) ~= 'x' then release(h) end\n"
    "  redis.call('DEL', P .. 'hold:' .. id)\n"
    "  redis.call('ZREM', P .. 'holds', id)\n"
    "  for i = 1, n do\n"
    "    local c = cost\n"
    "    if i == 1 then c = first end\n"
    "    if c > 0 then\n"
    "      local dk, mk = wkey(ARGV[10 + i], 'd', day), wkey(ARGV[10 + i], 'm', month)\n"
    "      redis.call('HINCRBY', dk, 's', c)\n"
    "      redis.call('EXPIRE', dk, ttl('d'))\n"
    "      redis.call('HINCRBY', mk, 's', c)\n"
    "      redis.call('EXPIRE', mk, ttl('m'))\n"
    "    end\n"
    "  end\n"
    "  tokens_adjust(ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]))\n"
    "  out[1] = 1\n"
    "end\n"
    "for i = 1, n do\n"
    "  out[#out + 1] = hnum(wkey(ARGV[10 + i], 'd', day), 's')\n"
    "  out[#out + 1] = hnum(wkey(ARGV[10 + i], 'm', month), 's')\n"
    "end\n"
    "return out\n";

/* ARGV: P, batch_id, n, {scope, kind 'd'|'m', period, amount} x n
 * Adds spend counted node-locally while Redis was down, once per batch id
 * (a retry after a lost answer adds nothing). Reply: {applied 0/1}. */
static const char reconcile_lua[] = LUA_COMMON
    "if not redis.call('SET', P .. 'rc:' .. ARGV[2], '1', 'NX', 'EX', 2592000) then return {0} end\n"
    "local n = tonumber(ARGV[3])\n"
    "for i = 0, n - 1 do\n"
    "  local b = 4 + i * 4\n"
    "  local k = wkey(ARGV[b], ARGV[b + 1], ARGV[b + 2])\n"
    "  redis.call('HINCRBY', k, 's', tonumber(ARGV[b + 3]))\n"
    "  redis.call('EXPIRE', k, ttl(ARGV[b + 1]))\n"
    "end\n"
    "return {1}\n";

/* ARGV: P, request_id... Releases and drops those holds (their requests
 * went on with node-local counters). Reply: {released}. */
static const char release_lua[] = LUA_COMMON
    "local done = 0\n"
    "for i = 2, #ARGV do\n"
    "  local h = redis.call('GET', P .. 'hold:' .. ARGV[i])\n"
    "  if h then\n"
    "    if string.sub(h, 1, 1) ~= 'x' then release(h) end\n"
    "    redis.call('DEL', P .. 'hold:' .. ARGV[i])\n"
    "    redis.call('ZREM', P .. 'holds', ARGV[i])\n"
    "    done = done + 1\n"
    "  end\n"
    "end\n"
    "return {done}\n";

/* ARGV: P, day, month, scope... Reply: {day_spent, month_spent} x scopes. */
static const char read_lua[] = LUA_COMMON
    "sweep()\n"
    "local out = {}\n"
    "for i = 4, #ARGV do\n"
    "  out[#out + 1] = hnum(wkey(ARGV[i], 'd', ARGV[2]), 's')\n"
    "  out[#out + 1] = hnum(wkey(ARGV[i], 'm', ARGV[3]), 's')\n"
    "end\n"
    "return out\n";

/* ARGV: P, hash_hex, record_json. Reply: {version}. */
static const char keyput_lua[] = "local P = ARGV[1]\n"
    "redis.call('HSET', P .. 'keys', ARGV[2], ARGV[3])\n"
    "return {redis.call('INCR', P .. 'keys:ver')}\n";

/* ARGV: P, day, month. Reply: {keys version, the gateway's day spent, its
 * month spent}: the watcher's poll (and probe), every turn. */
static const char poll_lua[] = LUA_COMMON
    "local v = tonumber(redis.call('GET', P .. 'keys:ver') or '0') or 0\n"
    "return {v, hnum(wkey('g', 'd', ARGV[2]), 's'), hnum(wkey('g', 'm', ARGV[3]), 's')}\n";

/* ARGV: P, a fresh salt (hex). Reply: the salt in force (a bulk string). */
static const char keysalt_lua[] = "local P = ARGV[1]\n"
    "redis.call('SET', P .. 'keys:salt', ARGV[2], 'NX')\n"
    "return redis.call('GET', P .. 'keys:salt')\n";

static const char *const texts[SCRIPT_COUNT] = {reserve_lua, settle_lua, reconcile_lua,
                                                release_lua, read_lua,   keyput_lua,
                                                keysalt_lua, poll_lua};
static char shas[SCRIPT_COUNT][41];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void compute_shas(void)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)texts[i], strlen(texts[i]), d);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++) snprintf(shas[i] + 2 * j, 3, "%02x", d[j]);
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

/* wire: the heartbeat message between mesh nodes (SPEC section 5), as a C
 * structure and as JSON. One message describes one node: who it is (id,
 * name, region, type, boot id, mesh address), how busy it is (in flight,
 * capacity, load), what it serves (models with prices, capabilities,
 * availability, recent latency and time to first token), how its providers
 * are, what it spent (so that cluster figures add each node's own provider
 * spend once) and which peers it knows (so that a node given one peer
 * learns the rest). Pure: no I/O; the parser is bounded and fuzzed
 * (tests/fuzz/fuzz_heartbeat.c). */
#ifndef AIPROXY_MESH_WIRE_H
#define AIPROXY_MESH_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

#define MESH_WIRE_VERSION 1
#define MESH_MAX_MESSAGE (1024 * 1024) /* a bigger heartbeat is refused */
#define MESH_MAX_MODELS 1024
#define MESH_MAX_PROVIDERS 256
#define MESH_MAX_KNOWN_PEERS 256
#define MESH_ID_MAX 64 /* node ids, provider names: longer ones are refused */
#define MESH_ADDR_MAX 256
#define MESH_NAME_MAX 128 /* model names, node names */

struct mesh_model_info {
    char name[MESH_NAME_MAX];
    nanos_t price_in_per_1k, price_out_per_1k, price_per_generation;
    unsigned capabilities; /* CAP_* bits of config.h */
    bool available;
    int64_t latency_ms; /* recent EWMA on that node; 0 unmeasured */
    int64_t ttft_ms;
};

struct mesh_provider_info {
    char name[MESH_ID_MAX];
    char status[16]; /* healthy, degraded, unhealthy, unavailable, ... */
    int models;
};

struct mesh_known_peer {
    char id[MESH_ID_MAX];
    char addr[MESH_ADDR_MAX];
    bool healthy; /* as the sender sees it */
};

struct mesh_node_state {
    char id[MESH_ID_MAX];
    char name[MESH_NAME_MAX];
    char region[MESH_ID_MAX];
    char type[32];
    char boot_id[40];         /* new at every start: a restart is noticed */
    char addr[MESH_ADDR_MAX]; /* its mesh listener, "" when it has none */
    int64_t uptime_s;
    int64_t in_flight;
    int64_t capacity;               /* 0: unbounded */
    int load_permille;              /* 0..1000 */
    nanos_t spend_day, spend_month; /* what it paid its own providers (UTC) */
    struct mesh_model_info *models;
    size_t n_models;
    struct mesh_provider_info *providers;
    size_t n_providers;
    struct mesh_known_peer *peers;
    size_t n_peers;
};

/* Frees what a parsed or built state owns (not `s` itself). */
void mesh_state_cleanup(struct mesh_node_state *s);

/* Deep copy: `dst` owns its arrays (free with mesh_state_cleanup). */
void mesh_state_copy(struct mesh_node_state *dst, const struct mesh_node_state *src);

/* Encodes `s` as a JSON object (a malloc'ed, NUL-terminated string the
 * caller frees; *len gets its length). */
char *mesh_state_encode(const struct mesh_node_state *s, size_t *len);

/* Parses one heartbeat message. Returns 0 with `out` filled (the caller
 * cleans it up), or -1 with a short reason in `err` (and nothing to clean
 * up): not JSON, another version, a missing or malformed id, a field of the
 * wrong type or over its bound, more than the MESH_MAX_* entries. */
int mesh_state_parse(const char *text, size_t len, struct mesh_node_state *out, char *err,
                     size_t errcap);

/* Whether `id` is a valid node id: 1..63 bytes of [A-Za-z0-9._-]. */
bool mesh_id_valid(const char *id);

#endif

// fuzz-sources: src/mesh/wire.c
/* fuzz_heartbeat: libFuzzer driver for the mesh heartbeat parser
 * (src/mesh/wire.c). The input is one message as a peer would send it.
 * A refusal must say why and leave nothing allocated; an accepted message
 * must survive a round trip: encoded again it parses to the same node,
 * and encoding that gives the same text (the encoder's output is a fixed
 * point of parse + encode). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/wire.h"

static void check(bool ok)
{
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mesh_node_state s;
    char err[128];
    if (mesh_state_parse((const char *)data, size, &s, err, sizeof err) != 0) {
        check(err[0] != '\0');
        check(!s.models && !s.providers && !s.peers);
        check(!s.n_models && !s.n_providers && !s.n_peers);
        mesh_state_cleanup(&s);
        return 0;
    }
    check(mesh_id_valid(s.id));
    check(s.n_models <= MESH_MAX_MODELS && s.n_providers <= MESH_MAX_PROVIDERS &&
          s.n_peers <= MESH_MAX_KNOWN_PEERS);
    for (size_t i = 0; i < s.n_peers; i++)
        check(strchr(s.peers[i].addr, ':') && (!s.peers[i].id[0] || mesh_id_valid(s.peers[i].id)));

    size_t len1 = 0;
    char *enc1 = mesh_state_encode(&s, &len1);
    check(enc1 && strlen(enc1) == len1);
    if (len1 > MESH_MAX_MESSAGE) {
        /* Escaping can grow a message past the bound (control characters
         * in names); real states are far smaller. Nothing to re-parse. */
        free(enc1);
        mesh_state_cleanup(&s);
        return 0;
    }
    struct mesh_node_state r;
    int rc = mesh_state_parse(enc1, len1, &r, err, sizeof err);
    check(rc == 0);
    check(strcmp(r.id, s.id) == 0);
    check(r.n_models == s.n_models && r.n_providers == s.n_providers && r.n_peers == s.n_peers);
    size_t len2 = 0;
    char *enc2 = mesh_state_encode(&r, &len2);
    check(len2 == len1 && memcmp(enc1, enc2, len1) == 0);
    free(enc2);
    free(enc1);
    mesh_state_cleanup(&r);
    mesh_state_cleanup(&s);
    return 0;
}

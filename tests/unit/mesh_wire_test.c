/* mesh_wire_test: the mesh heartbeat message (src/mesh/wire.c): a full
 * state survives encode -> parse field for field, the minimal message is
 * accepted, and every malformed one (version, node id, string and array
 * bounds, negative money, wrong root, oversize) is refused with a reason
 * and nothing left allocated, while unusable gossip entries are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "mesh/wire.h"

/* ---- helpers ---- */

static int parse(const char *text, struct mesh_node_state *s)
{
    char err[128];
    int rc = mesh_state_parse(text, strlen(text), s, err, sizeof err);
    if (rc != 0) {
        /* A refusal says why and leaves nothing to clean up. */
        assert_true(err[0] != '\0');
        assert_null(s->models);
        assert_null(s->providers);
        assert_null(s->peers);
        assert_int_equal(s->n_models + s->n_providers + s->n_peers, 0);
    }
    return rc;
}

static void refused(const char *text)
{
    struct mesh_node_state s;
    if (parse(text, &s) == 0) {
        mesh_state_cleanup(&s);
        fail_msg("accepted: %s", text);
    }
}

static void accepted(const char *text)
{
    struct mesh_node_state s;
    char err[128];
    if (mesh_state_parse(text, strlen(text), &s, err, sizeof err) != 0)
        fail_msg("refused (%s): %s", err, text);
    mesh_state_cleanup(&s);
}

/* A string of n copies of c (the caller frees it). */
static char *repeat(char c, size_t n)
{
    char *s = xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void full_state(struct mesh_node_state *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "node-1.eu_west");
    snprintf(s->name, sizeof s->name, "Frankfurt \"one\" \xc3\xa9");
    snprintf(s->region, sizeof s->region, "eu-central");
    snprintf(s->type, sizeof s->type, "gateway");
    snprintf(s->boot_id, sizeof s->boot_id, "4f1c2a9e-0b7d-4e1a-9c3b-2d8e6f0a1b2c");
    snprintf(s->addr, sizeof s->addr, "10.0.0.1:7946");
    s->uptime_s = 86400 * 3 + 17;
    s->in_flight = 12;
    s->capacity = 256;
    s->load_permille = 47;
    s->spend_day = 1234567890;
    s->spend_month = 98765432101LL;
    s->n_models = 3;
    s->models = xcalloc(s->n_models, sizeof *s->models);
    snprintf(s->models[0].name, sizeof s->models[0].name, "gpt-4o-mini");
    s->models[0].price_in_per_1k = 150000;
    s->models[0].price_out_per_1k = 600000;
    s->models[0].capabilities = 0x21; /* text, tools */
    s->models[0].available = true;
    s->models[0].latency_ms = 840;
    s->models[0].ttft_ms = 210;
    snprintf(s->models[1].name, sizeof s->models[1].name, "@cf/stabilityai/sdxl");
    s->models[1].price_per_generation = 40000000;
    s->models[1].capabilities = 0x10;
    s->models[1].available = false;
    snprintf(s->models[2].name, sizeof s->models[2].name, "llama3.1:8b");
    s->models[2].capabilities = 0x7f;
    s->models[2].available = true;
    s->models[2].latency_ms = 86400000;
    s->n_providers = 2;
    s->providers = xcalloc(s->n_providers, sizeof *s->providers);
    snprintf(s->providers[0].name, sizeof s->providers[0].name, "openai");
    snprintf(s->providers[0].status, sizeof s->providers[0].status, "healthy");
    s->providers[0].models = 1;
    snprintf(s->providers[1].name, sizeof s->providers[1].name, "ollama");
    snprintf(s->providers[1].status, sizeof s->providers[1].status, "degraded");
    s->providers[1].models = 2;
    s->n_peers = 2;
    s->peers = xcalloc(s->n_peers, sizeof *s->peers);
    snprintf(s->peers[0].id, sizeof s->peers[0].id, "node-2");
    snprintf(s->peers[0].addr, sizeof s->peers[0].addr, "10.0.0.2:7946");
    s->peers[0].healthy = true;
    snprintf(s->peers[1].id, sizeof s->peers[1].id, "node-3");
    snprintf(s->peers[1].addr, sizeof s->peers[1].addr, "[fd00::3]:7946");
    s->peers[1].healthy = false;
}

static void assert_state_equal(const struct mesh_node_state *a, const struct mesh_node_state *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->region, b->region);
    assert_string_equal(a->type, b->type);
    assert_string_equal(a->boot_id, b->boot_id);
    assert_string_equal(a->addr, b->addr);
    assert_int_equal(a->uptime_s, b->uptime_s);
    assert_int_equal(a->in_flight, b->in_flight);
    assert_int_equal(a->capacity, b->capacity);
    assert_int_equal(a->load_permille, b->load_permille);
    assert_int_equal(a->spend_day, b->spend_day);
    assert_int_equal(a->spend_month, b->spend_month);
    assert_int_equal(a->n_models, b->n_models);
    for (size_t i = 0; i < a->n_models; i++) {
        const struct mesh_model_info *x = &a->models[i], *y = &b->models[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->price_in_per_1k, y->price_in_per_1k);
        assert_int_equal(x->price_out_per_1k, y->price_out_per_1k);
        assert_int_equal(x->price_per_generation, y->price_per_generation);
        assert_int_equal(x->capabilities, y->capabilities);
        assert_int_equal(x->available, y->available);
        assert_int_equal(x->latency_ms, y->latency_ms);
        assert_int_equal(x->ttft_ms, y->ttft_ms);
    }
    assert_int_equal(a->n_providers, b->n_providers);
    for (size_t i = 0; i < a->n_providers; i++) {
        assert_string_equal(a->providers[i].name, b->providers[i].name);
        assert_string_equal(a->providers[i].status, b->providers[i].status);
        assert_int_equal(a->providers[i].models, b->providers[i].models);
    }
    assert_int_equal(a->n_peers, b->n_peers);
    for (size_t i = 0; i < a->n_peers; i++) {
        assert_string_equal(a->peers[i].id, b->peers[i].id);
        assert_string_equal(a->peers[i].addr, b->peers[i].addr);
        assert_int_equal(a->peers[i].healthy, b->peers[i].healthy);
    }
}

/* ---- round trip ---- */

static void test_round_trip(void **state)
{
    (void)state;
    struct mesh_node_state in, out;
    full_state(&in);
    size_t len = 0;
    char *text = mesh_state_encode(&in, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    char err[128] = "";
    assert_int_equal(mesh_state_parse(text, len, &out, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_state_equal(&in, &out);
    /* The encoding is stable: the parsed copy encodes to the same text. */
    size_t len2 = 0;
    char *text2 = mesh_state_encode(&out, &len2);
    assert_int_equal(len2, len);
    assert_string_equal(text2, text);
    free(text2);
    free(text);
    mesh_state_cleanup(&out);
    assert_null(out.models);
    assert_int_equal(out.n_models + out.n_providers + out.n_peers, 0);
    mesh_state_cleanup(&in);
}

static void test_copy(void **state)
{
    (void)state;
    struct mesh_node_state in, copy;
    full_state(&in);
    mesh_state_copy(&copy, &in);
    assert_ptr_not_equal(copy.models, in.models);
    assert_ptr_not_equal(copy.peers, in.peers);
    assert_state_equal(&in, &copy);
    mesh_state_cleanup(&in);
    /* independent of the original (ASan would see a use after free) */
    assert_int_equal(copy.n_models, 3);
    assert_string_equal(copy.models[2].name, "llama3.1:8b");
    assert_string_equal(copy.peers[1].addr, "[fd00::3]:7946");
    mesh_state_cleanup(&copy);
    /* An empty state copies to an empty state. */
    struct mesh_node_state empty = {.id = "a"}, c2;
    mesh_state_copy(&c2, &empty);
    assert_null(c2.models);
    assert_null(c2.providers);
    assert_null(c2.peers);
    mesh_state_cleanup(&c2);
}

static void test_minimal(void **state)
{
    (void)state;
    struct mesh_node_state s;
    assert_int_equal(parse("{\"v\":1,\"node\":{\"id\":\"a\"}}", &s), 0);
    assert_string_equal(s.id, "a");
    assert_string_equal(s.name, "");
    assert_string_equal(s.addr, "");
    assert_int_equal(s.uptime_s, 0);
    assert_int_equal(s.capacity, 0);
    assert_int_equal(s.load_permille, 0);
    assert_int_equal(s.spend_day, 0);
    assert_null(s.models);
    assert_null(s.providers);
    assert_null(s.peers);
    assert_int_equal(s.n_models + s.n_providers + s.n_peers, 0);
    mesh_state_cleanup(&s);
    /* null fields and empty arrays are the same as absent ones; unknown
     * fields (from a newer node) are ignored. */
    assert_int_equal(parse("{\"v\":1,\"node\":{\"id\":\"a\",\"name\":null},\"load\":null,"
                           "\"models\":[],\"providers\":null,\"peers\":[],\"future\":{\"x\":1}}",
                           &s),
                     0);
    assert_null(s.models);
    assert_null(s.peers);
    mesh_state_cleanup(&s);
    /* A model without "available" is available. */
    assert_int_equal(parse("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}]}", &s),
                     0);
    assert_int_equal(s.n_models, 1);
    assert_true(s.models[0].available);
    mesh_state_cleanup(&s);
}

/* ---- refusals ---- */

static void test_version(void **state)
{
    (void)state;
    refused("{\"v\":2,\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":0,\"node\":{\"id\":\"a\"}}");
    refused("{\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":\"1\",\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":1.0,\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":-1,\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":1001,\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":2,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}]}");
    struct mesh_node_state s;
    char err[128];
    const char *t = "{\"v\":2,\"node\":{\"id\":\"a\"}}";
    assert_int_equal(mesh_state_parse(t, strlen(t), &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "version"));
}

static void test_node_id(void **state)
{
    (void)state;
    refused("{\"v\":1}");
    refused("{\"v\":1,\"node\":null}");
    refused("{\"v\":1,\"node\":[]}");
    refused("{\"v\":1,\"node\":\"a\"}");
    refused("{\"v\":1,\"node\":{}}");
    refused("{\"v\":1,\"node\":{\"id\":null}}");
    refused("{\"v\":1,\"node\":{\"id\":7}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a,b\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a b\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a:b\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\\u0000b\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"\xc3\xa9\"}}");
    char msg[256];
    char *id = repeat('x', 64);
    snprintf(msg, sizeof msg, "{\"v\":1,\"node\":{\"id\":\"%s\"}}", id);
    refused(msg);
    id[63] = '\0'; /* 63 bytes: the longest valid id */
    snprintf(msg, sizeof msg, "{\"v\":1,\"node\":{\"id\":\"%s\"}}", id);
    accepted(msg);
    free(id);
    /* An invalid id is refused even after the arrays were read. */
    refused("{\"v\":1,\"node\":{\"id\":\"a/b\"},\"models\":[{\"name\":\"m\"}],"
            "\"peers\":[{\"id\":\"b\",\"addr\":\"h:1\"}]}");
}

static void test_string_bounds(void **state)
{
    (void)state;
    char msg[1024];
    char *s = repeat('n', MESH_NAME_MAX);
    /* node.name: MESH_NAME_MAX bytes is one too many, one less fits */
    snprintf(msg, sizeof msg, "{\"v\":1,\"node\":{\"id\":\"a\",\"name\":\"%s\"}}", s);
    refused(msg);
    s[MESH_NAME_MAX - 1] = '\0';
    snprintf(msg, sizeof msg, "{\"v\":1,\"node\":{\"id\":\"a\",\"name\":\"%s\"}}", s);
    accepted(msg);
    free(s);
    /* node.type holds 31 bytes */
    s = repeat('t', 32);
    snprintf(msg, sizeof msg, "{\"v\":1,\"node\":{\"id\":\"a\",\"type\":\"%s\"}}", s);
    refused(msg);
    free(s);
    /* a model name too long after a good model: the first one's array is freed */
    s = repeat('m', MESH_NAME_MAX);
    snprintf(msg, sizeof msg,
             "{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"ok\"},{\"name\":\"%s\"}]}",
             s);
    refused(msg);
    free(s);
    /* a provider status too long, after models were allocated */
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}],"
            "\"providers\":[{\"name\":\"p\",\"status\":\"aaaaaaaaaaaaaaaaa\"}]}");
    /* a peer address too long is an error, not a skipped entry */
    s = repeat('h', MESH_ADDR_MAX);
    snprintf(msg, sizeof msg,
             "{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}],"
             "\"peers\":[{\"id\":\"b\",\"addr\":\"%s:1\"}]}",
             s);
    refused(msg);
    free(s);
    /* strings of the wrong type */
    refused("{\"v\":1,\"node\":{\"id\":\"a\",\"name\":1}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\",\"addr\":[\"h:1\"]}}");
    /* an escaped NUL inside a string */
    refused("{\"v\":1,\"node\":{\"id\":\"a\",\"name\":\"x\\u0000y\"}}");
    /* a model needs a name */
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"\"}]}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"available\":true}]}");
}

/* Refuses a message whose second model carries `fields` (after a good
 * first model, so the refusal must free an array already filled). */
static void refused_model(const char *fields)
{
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"},"
             "{\"name\":\"n\",%s}]}",
             fields);
    refused(msg);
}

static void test_numbers(void **state)
{
    (void)state;
    refused_model("\"price_in_per_1k_nanos\":-1");
    refused_model("\"price_out_per_1k_nanos\":-5");
    refused_model("\"price_per_generation_nanos\":-1");
    refused_model("\"price_in_per_1k_nanos\":1.5");
    refused_model("\"price_in_per_1k_nanos\":\"1\"");
    refused_model("\"price_in_per_1k_nanos\":9223372036854775807");
    refused_model("\"capabilities\":65536");
    refused_model("\"latency_ms\":-1");
    refused_model("\"ttft_ms\":86400001");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"spend\":{\"day_nanos\":-1}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"spend\":{\"month_nanos\":-1}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"load\":{\"load_permille\":1001}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"load\":{\"in_flight\":-1}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\",\"uptime_s\":-1}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"providers\":[{\"name\":\"p\",\"models\":-1}]}");
    accepted("{\"v\":1,\"node\":{\"id\":\"a\"},\"load\":{\"load_permille\":1000},"
             "\"models\":[{\"name\":\"m\",\"price_in_per_1k_nanos\":0,\"capabilities\":65535}]}");
}

static void test_shapes(void **state)
{
    (void)state;
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"load\":[]}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"spend\":1}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":{}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"},\"n\"]}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}],\"providers\":[1]}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}],\"peers\":\"b\"}");
    /* a peers entry that is not an object is an error, unlike a bad id */
    refused("{\"v\":1,\"node\":{\"id\":\"a\"},\"peers\":[{\"id\":\"b\",\"addr\":\"h:1\"},null]}");
    /* duplicate keys */
    refused("{\"v\":1,\"v\":1,\"node\":{\"id\":\"a\"}}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\",\"id\":\"b\"}}");
}

static void test_too_many(void **state)
{
    (void)state;
    const char *head = "{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[";
    const char *entry = "{\"name\":\"m\"}";
    size_t cap = strlen(head) + (MESH_MAX_MODELS + 1) * (strlen(entry) + 1) + 8;
    char *msg = xmalloc(cap);
    for (size_t count = MESH_MAX_MODELS; count <= MESH_MAX_MODELS + 1; count++) {
        size_t n = (size_t)snprintf(msg, cap, "%s", head);
        for (size_t i = 0; i < count; i++)
            n += (size_t)snprintf(msg + n, cap - n, "%s%s", i ? "," : "", entry);
        snprintf(msg + n, cap - n, "]}");
        struct mesh_node_state s;
        if (count == MESH_MAX_MODELS) {
            assert_int_equal(parse(msg, &s), 0);
            assert_int_equal(s.n_models, MESH_MAX_MODELS);
            mesh_state_cleanup(&s);
        } else {
            assert_int_equal(parse(msg, &s), -1);
        }
    }
    free(msg);
    /* The same bound for peers, after a good models array. */
    head = "{\"v\":1,\"node\":{\"id\":\"a\"},\"models\":[{\"name\":\"m\"}],\"peers\":[";
    entry = "{\"id\":\"b\",\"addr\":\"h:1\"}";
    cap = strlen(head) + (MESH_MAX_KNOWN_PEERS + 1) * (strlen(entry) + 1) + 8;
    msg = xmalloc(cap);
    size_t n = (size_t)snprintf(msg, cap, "%s", head);
    for (size_t i = 0; i < MESH_MAX_KNOWN_PEERS + 1; i++)
        n += (size_t)snprintf(msg + n, cap - n, "%s%s", i ? "," : "", entry);
    snprintf(msg + n, cap - n, "]}");
    refused(msg);
    free(msg);
}

static void test_peers_skipped(void **state)
{
    (void)state;
    struct mesh_node_state s;
    const char *t = "{\"v\":1,\"node\":{\"id\":\"a\"},\"peers\":["
                    "{\"id\":\"a,b\",\"addr\":\"10.0.0.9:1\",\"healthy\":true},"
                    "{\"id\":\"good-1\",\"addr\":\"10.0.0.2:7946\",\"healthy\":true},"
                    "{\"id\":\"nocolon\",\"addr\":\"10.0.0.3\"},"
                    "{\"id\":\"noaddr\"},"
                    "{\"id\":\"emptyaddr\",\"addr\":\"\"},"
                    "{\"id\":\"has space\",\"addr\":\"h:1\"},"
                    "{\"id\":\"good-2\",\"addr\":\"h:2\",\"healthy\":1},"
                    "{\"addr\":\"anon:3\"}"
                    "]}";
    assert_int_equal(parse(t, &s), 0);
    assert_int_equal(s.n_peers, 3);
    assert_string_equal(s.peers[0].id, "good-1");
    assert_string_equal(s.peers[0].addr, "10.0.0.2:7946");
    assert_true(s.peers[0].healthy);
    assert_string_equal(s.peers[1].id, "good-2");
    assert_false(s.peers[1].healthy); /* only JSON true is healthy */
    /* an entry without an id keeps its address (a seed known by address) */
    assert_string_equal(s.peers[2].id, "");
    assert_string_equal(s.peers[2].addr, "anon:3");
    mesh_state_cleanup(&s);
    /* Every entry unusable: accepted, no peers. */
    assert_int_equal(
        parse("{\"v\":1,\"node\":{\"id\":\"a\"},\"peers\":[{\"id\":\"x\",\"addr\":\"y\"}]}", &s),
        0);
    assert_int_equal(s.n_peers, 0);
    mesh_state_cleanup(&s);
}

static void test_not_an_object(void **state)
{
    (void)state;
    refused("");
    refused("null");
    refused("[]");
    refused("[{\"v\":1,\"node\":{\"id\":\"a\"}}]");
    refused("1");
    refused("\"x\"");
    refused("true");
    refused("{");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"}");
    refused("{\"v\":1,\"node\":{\"id\":\"a\"}} trailing");
    refused("not json");
    /* Bytes after a NUL count: the length, not the terminator, bounds it. */
    struct mesh_node_state s;
    char err[64];
    const char t[] = "{\"v\":1,\"node\":{\"id\":\"a\"}}\0junk";
    assert_int_equal(mesh_state_parse(t, sizeof t - 1, &s, err, sizeof err), -1);
    assert_null(s.models);
}

static void test_oversize(void **state)
{
    (void)state;
    const char *body = "{\"v\":1,\"node\":{\"id\":\"a\"}}";
    size_t blen = strlen(body);
    /* The message padded with whitespace to exactly the cap parses; one
     * byte more is refused before it is read. */
    char *msg = xmalloc(MESH_MAX_MESSAGE + 2);
    memcpy(msg, body, blen);
    memset(msg + blen, ' ', MESH_MAX_MESSAGE + 1 - blen);
    msg[MESH_MAX_MESSAGE + 1] = '\0';
    struct mesh_node_state s;
    char err[128];
    assert_int_equal(mesh_state_parse(msg, MESH_MAX_MESSAGE, &s, err, sizeof err), 0);
    mesh_state_cleanup(&s);
    assert_int_equal(mesh_state_parse(msg, MESH_MAX_MESSAGE + 1, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger"));
    assert_null(s.models);
    free(msg);
}

static void test_no_err_buffer(void **state)
{
    (void)state;
    /* errcap 0: the reason is dropped, nothing is written through err. */
    struct mesh_node_state s;
    assert_int_equal(mesh_state_parse("[]", 2, &s, NULL, 0), -1);
    const char *t = "{\"v\":2,\"node\":{\"id\":\"a\"}}";
    assert_int_equal(mesh_state_parse(t, strlen(t), &s, NULL, 0), -1);
    /* a tiny buffer gets a truncated, terminated reason */
    char err[4] = "xxx";
    assert_int_equal(mesh_state_parse(t, strlen(t), &s, err, sizeof err), -1);
    assert_int_equal(strlen(err), 3);
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(mesh_id_valid("a"));
    assert_true(mesh_id_valid("Z"));
    assert_true(mesh_id_valid("0"));
    assert_true(mesh_id_valid("node-1.eu_west"));
    assert_true(mesh_id_valid("..."));
    assert_true(mesh_id_valid("-_-"));
    assert_false(mesh_id_valid(""));
    assert_false(mesh_id_valid("a,b"));
    assert_false(mesh_id_valid("a b"));
    assert_false(mesh_id_valid("a:b"));
    assert_false(mesh_id_valid("a/b"));
    assert_false(mesh_id_valid("a\nb"));
    assert_false(mesh_id_valid("\xc3\xa9"));
    char *id = repeat('x', 64);
    assert_false(mesh_id_valid(id));
    id[63] = '\0';
    assert_true(mesh_id_valid(id));
    id[62] = ',';
    assert_false(mesh_id_valid(id));
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_copy),
        cmocka_unit_test(test_minimal),       cmocka_unit_test(test_version),
        cmocka_unit_test(test_node_id),       cmocka_unit_test(test_string_bounds),
        cmocka_unit_test(test_numbers),       cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_too_many),      cmocka_unit_test(test_peers_skipped),
        cmocka_unit_test(test_not_an_object), cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_no_err_buffer), cmocka_unit_test(test_id_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

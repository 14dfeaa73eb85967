/* mesh_promtext_test: the cluster exposition (src/mesh/promtext.c): samples
 * labelled node, one HELP/TYPE per family, histogram series kept in their
 * family, escaping of node ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mesh/promtext.h"

static const char node_a[] = "# HELP x_total Things.\n"
                             "# TYPE x_total counter\n"
                             "x_total 3\n"
                             "# HELP lat_seconds Latency.\n"
                             "# TYPE lat_seconds histogram\n"
                             "lat_seconds_bucket{le=\"0.1\"} 1\n"
                             "lat_seconds_bucket{le=\"+Inf\"} 2\n"
                             "lat_seconds_sum 0.3\n"
                             "lat_seconds_count 2\n"
                             "g{k=\"v\"} 1.5\n";
static const char node_b[] = "# HELP x_total Things.\r\n"
                             "# TYPE x_total counter\r\n"
                             "x_total 4\r\n"
                             "# TYPE lat_seconds histogram\n"
                             "lat_seconds_count 7\n";

static void test_merge(void **state)
{
    struct prom_merge *m = prom_merge_new();
    prom_merge_add(m, "a", node_a, strlen(node_a));
    prom_merge_add(m, "b", node_b, strlen(node_b));
    prom_merge_sample(m, "aiproxy_mesh_node_up", "Up.", "gauge", "aiproxy_mesh_node_up{node=\"a\"} 1");
    size_t len;
    char *out = prom_merge_render(m, &len);
    prom_merge_free(m);
    assert_int_equal(strlen(out), len);
    const char *want = "# HELP x_total Things.\n"
                       "# TYPE x_total counter\n"
                       "x_total{node=\"a\"} 3\n"
                       "x_total{node=\"b\"} 4\n"
                       "# HELP lat_seconds Latency.\n"
                       "# TYPE lat_seconds histogram\n"
                       "lat_seconds_bucket{node=\"a\",le=\"0.1\"} 1\n"
                       "lat_seconds_bucket{node=\"a\",le=\"+Inf\"} 2\n"
                       "lat_seconds_sum{node=\"a\"} 0.3\n"
                       "lat_seconds_count{node=\"a\"} 2\n"
                       "lat_seconds_count{node=\"b\"} 7\n"
                       "g{node=\"a\",k=\"v\"} 1.5\n"
                       "# HELP aiproxy_mesh_node_up Up.\n"
                       "# TYPE aiproxy_mesh_node_up gauge\n"
                       "aiproxy_mesh_node_up{node=\"a\"} 1\n";
    assert_string_equal(out, want);
    free(out);
}

static void test_escaping_and_junk(void **state)
{
    struct prom_merge *m = prom_merge_new();
    const char text[] = "x{} 1\n# a comment\n{bad} 2\n\nname_only\ny 2";
    prom_merge_add(m, "q\"\\\n", text, sizeof text - 1);
    char *out = prom_merge_render(m, NULL);
    prom_merge_free(m);
    assert_string_equal(out, "x{node=\"q\\\"\\\\\\n\"} 1\ny{node=\"q\\\"\\\\\\n\"} 2\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_escaping_and_junk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* dashboard_assets: the files of assets/dashboard/, embedded at build time
 * (the Makefile runs scripts/embed-assets.sh into $(BUILD)/gen/). Each array
 * ends with a NUL that the length does not count. */
#ifndef AIPROXY_OBS_DASHBOARD_ASSETS_H
#define AIPROXY_OBS_DASHBOARD_ASSETS_H

#include <stddef.h>

extern const unsigned char dashboard_index_html[];
extern const size_t dashboard_index_html_len;
extern const unsigned char dashboard_login_html[];
extern const size_t dashboard_login_html_len;
extern const unsigned char dashboard_app_js[];
extern const size_t dashboard_app_js_len;
extern const unsigned char dashboard_app_css[];
extern const size_t dashboard_app_css_len;

#endif

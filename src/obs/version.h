/* version: the release string shared by aiproxyd, aiproxyctl, /aiproxy/status
 * and trace resources. */
#ifndef AIPROXY_OBS_VERSION_H
#define AIPROXY_OBS_VERSION_H

#define AIPROXY_VERSION "0.1.0"

#endif

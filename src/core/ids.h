/* ids: request ids, unique across workers and restarts: "req_" + 20 hex
 * digits (a random per-process prefix and a counter). */
#ifndef AIPROXY_CORE_IDS_H
#define AIPROXY_CORE_IDS_H

#define ID_REQUEST_LEN 24

/* Seeds the random prefix; call once before any thread starts. */
void ids_init(void);

/* Writes a NUL-terminated id into out (ID_REQUEST_LEN + 1 bytes). Thread-safe. */
void ids_request(char out[ID_REQUEST_LEN + 1]);

#endif

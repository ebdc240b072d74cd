/* cluster.h -- the connections behind kp_cache: one Redis node ([redis] host/port), or a Redis
 * Cluster ([redis] cluster = host:port,... seeds).
 *
 * In cluster mode the slot map comes from CLUSTER SLOTS (asked of any node that answers); a
 * command goes to the master of its key's slot (CRC16 of the key or of its {hash tag}, mod 16384).
 * One call pipelines its commands grouped by node (one round trip per node) and follows the
 * cluster's redirections: MOVED (the slot's owner changed: the map is refreshed, the command
 * retried there), ASK (the slot is migrating: ASKING + the command on the named node), NOSCRIPT
 * (that node lost or never had the script: SCRIPT LOAD there, retry). A node that cannot be reached
 * makes the map be refreshed (a replica may have been promoted); the call then fails and the
 * caller retries with backoff. With [redis] cluster_wait_ms > 0, writes to a master that has a
 * replica are followed by WAIT 1 (a master killed right after acknowledging does not lose them).
 * One node (no cluster) is a map of one node without slots: the same calls, MOVED never happens.
 * Not thread-safe: one kp_cluster per kp_cache. hiredis is used only here and in cache.c. */
#ifndef KP_CLUSTER_H
#define KP_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "common/config.h"

#define KP_CLUSTER_SLOTS 16384

typedef struct kp_cluster kp_cluster;

/* One command of a pipelined call. argv/argl as hiredis' redisAppendCommandArgv; key (keylen
 * bytes) routes it; write = 1 for a write (counts for WAIT). A command whose argv[0] is "EVALSHA"
 * has the script's SHA1 (kp_cluster_sha) in argv[1]. */
typedef struct {
    int argc;
    const char **argv;
    const size_t *argl;
    const char *key;
    size_t keylen;
    int write;
} kp_cluster_cmd;

/* The hash slot of a key: CRC16 (XMODEM) of the key, or of the text between its first '{' and the
 * next '}' when that text is not empty, modulo 16384 (Redis Cluster's rule). */
int kp_cluster_slot(const char *key, size_t len);

/* The CRC16 (XMODEM: polynomial 0x1021, initial 0) of len bytes. */
unsigned kp_cluster_crc16(const char *buf, size_t len);

/* A client for c's [redis] settings that loads script (Lua text, borrowed: must outlive the
 * client) on every node it talks to. Connects lazily. NULL on OOM or a bad [redis] cluster list
 * (the reason in err). */
kp_cluster *kp_cluster_new(const kp_config *c, const char *script, char *err, size_t errlen);

/* Closes every connection and frees. Accepts NULL. */
void kp_cluster_free(kp_cluster *cl);

/* 1 in cluster mode ([redis] cluster set), 0 for one node. */
int kp_cluster_enabled(const kp_cluster *cl);

/* Connects: one node (AUTH, SELECT, SCRIPT LOAD), or in cluster mode the slot map and every
 * master. Returns 0, or -1 with a reason in err ("redis HOST:PORT: ..."). */
int kp_cluster_connect(kp_cluster *cl, char *err, size_t errlen);

/* The loaded script's SHA1 (40 hex digits; "" before the first successful connect). */
const char *kp_cluster_sha(const kp_cluster *cl);

/* Runs n commands: pipelined per node, redirections followed (at most a few rounds). Returns 0
 * with rep[i] = each command's final reply (caller frees with freeReplyObject; an error reply
 * other than a redirection is a final reply), or -1 with a reason in err and every rep[i] NULL
 * (a node could not be reached, a redirection loop, a replica that did not acknowledge in time).
 * A failed call may have run some of the commands: callers send only commands that are safe to
 * repeat. */
int kp_cluster_exec(kp_cluster *cl, const kp_cluster_cmd *c, int n, redisReply **rep, char *err,
                    size_t errlen);

#endif

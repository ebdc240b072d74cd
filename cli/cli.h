/* cli.h -- the kprec verbs and the helpers they share (options: cli/opts.h, input files:
 * cli/data.h, versions: cli/version.h). */
#ifndef KP_CLI_H
#define KP_CLI_H

#include "common/config.h"

/* Loads the config file (or only defaults + environment when path is NULL). On error prints
 * "kprec: FILE:LINE: ..." to stderr, releases c and returns -1 (the verb exits 2). */
int kp_cli_config(kp_config *c, const char *path);

/* The verbs. argv[0] is the verb's name, the rest its options (each verb's --help lists them).
 * Each returns the process exit status: 0 ok, 1 failure (unreadable or invalid input, a service
 * error), 2 usage error; every message goes to stderr, results to stdout or the --out file. The
 * verbs own nothing after they return. */
/* Options of a verb that takes only -c FILE and --help. Returns -1 with *path set (NULL when not
 * given) to go on, or the exit code once usage was printed (0 for --help, 2 for a bad option). */
int kp_cli_config_only_opts(int argc, char **argv, const char *usage, const char **path);

int kp_cmd_worker(int argc, char **argv);
int kp_cmd_replay(int argc, char **argv);
int kp_cmd_get(int argc, char **argv);
int kp_cmd_topics(int argc, char **argv);
int kp_cmd_dump(int argc, char **argv);
int kp_cmd_config(int argc, char **argv);
int kp_cmd_eval(int argc, char **argv);
int kp_cmd_simulate_clicks(int argc, char **argv);
int kp_cmd_split(int argc, char **argv);
int kp_cmd_train_ce(int argc, char **argv);
int kp_cmd_train(int argc, char **argv);
int kp_cmd_label(int argc, char **argv);
int kp_cmd_calibrate(int argc, char **argv);

#endif

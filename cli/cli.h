/* cli.h -- the kprec verbs and the helpers they share (options: cli/opts.h, input files:
 * cli/data.h, versions: cli/version.h). */
#ifndef KP_CLI_H
#define KP_CLI_H

#include "common/config.h"

/* Loads the config file (or only defaults + environment when path is NULL). On error prints
 * "kprec: FILE:LINE: ..." to stderr, releases c and returns -1 (the verb exits 2). */
int kp_cli_config(kp_config *c, const char *path);

/* Reads the options of a verb that takes only -c FILE and --help / -h (argc, argv as the verb
 * got them); usage is the verb's --help text. Returns -1 to go on, *path set to the -c argument
 * (pointing into argv) or NULL when not given; or the verb's exit status once usage was printed:
 * 0 for --help (usage on stdout), 2 for an unknown option or a missing value (usage on stderr).
 * Other arguments are ignored. */
int kp_cli_config_only_opts(int argc, char **argv, const char *usage, const char **path);

/* The verbs. argc, argv: the command line from the verb on -- argv[0] is the verb's name,
 * argv[1..argc) the arguments as given after it (each verb's --help lists its options). Each
 * returns the process exit status: 0 ok, 1 failure (unreadable or invalid input, a service error),
 * 2 usage error; every message goes to stderr, results to stdout or the --out file. The verbs own
 * nothing after they return. */
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
int kp_cmd_model(int argc, char **argv);
int kp_cmd_rescore(int argc, char **argv);

#endif

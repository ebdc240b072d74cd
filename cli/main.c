/* kprec: one binary, a few verbs. Each verb is a thin front over library code. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/version.h"
#include "common/log.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} verb;

static const verb verbs[] = {
    {"worker", kp_cmd_worker, "run the stream worker (kprec worker -c FILE)"},
    {"replay", kp_cmd_replay, "publish ItemListed events from a TSV file to Kafka"},
    {"get", kp_cmd_get, "print the cached recommendations of one item from Redis"},
    {"topics", kp_cmd_topics, "create the configured Kafka topics (idempotent)"},
    {"dump", kp_cmd_dump, "print the records of a topic as JSON lines (suggestions, dlq, items)"},
    {"config", kp_cmd_config, "print the effective configuration (file + environment)"},
    {"eval", kp_cmd_eval, "offline evaluation of a model: recall@k, spearman, pearson, auc"},
    {"simulate-clicks", kp_cmd_simulate_clicks, "simulate a biased click log from judgments"},
    {"split", kp_cmd_split, "split items and judgments into train/valid by a hash of item_id"},
    {"train-ce", kp_cmd_train_ce, "train the cross-encoder assistant on teacher judgments"},
    {"train", kp_cmd_train, "train the bi-encoder (CTR + SR + distillation) from files"},
    {"calibrate", kp_cmd_calibrate, "fit p(relevant) of the pipeline's score (held-out data)"},
    {"version", kp_cmd_version, "print the versions of kprec and its libraries (also --version)"},
    {"label", kp_cmd_label, "judge (item, keyphrase) pairs with an LLM teacher (OpenAI API)"},
    {"model", kp_cmd_model, "the model topic's versions (list) and a rollback to a checkpoint"},
    {"rescore", kp_cmd_rescore, "re-score items cached by an older model version"},
};
#define NVERBS (int)(sizeof verbs / sizeof verbs[0])

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kprec COMMAND [OPTIONS]   (kprec COMMAND --help for its options)\n\n"
            "kprec recommends advertiser keyphrases for new e-commerce listings, in a stream.\n\n"
            "commands:\n");
    for (int i = 0; i < NVERBS; i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].help);
    fprintf(f, "  %-10s %s\n", "help", "this list");
}

int main(int argc, char **argv)
{
    kp_log_init();
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) return kp_cmd_version(argc - 1, argv + 1);
    for (int i = 0; i < NVERBS; i++)
        if (!strcmp(argv[1], verbs[i].name)) return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kprec: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

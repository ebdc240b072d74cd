/* kprec replay: publish items, click logs and judgments from files (producer/replay.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "producer/replay.h"

int kp_cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"items", required_argument, 0, 'i'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"count", required_argument, 0, 'n'},
                                         {"bad", required_argument, 0, 'b'},
                                         {"v0-every", required_argument, 0, 'o'},
                                         {"topic", required_argument, 0, 't'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"clicks", required_argument, 0, 'C'},
                                         {"judgments", required_argument, 0, 'J'},
                                         {"keyphrases", required_argument, 0, 'K'},
                                         {"remove", no_argument, 0, 'R'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    kp_replay_opts o = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:i:r:n:b:o:t:qC:J:K:Rh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'i':
            o.items_path = optarg;
            break;
        case 'r':
            o.rate = atof(optarg);
            break;
        case 'n':
            o.count = atol(optarg);
            break;
        case 'b':
            o.bad = atol(optarg);
            break;
        case 'o':
            o.v0_every = atol(optarg);
            break;
        case 't':
            o.topic = optarg;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'C':
            o.clicks_path = optarg;
            break;
        case 'J':
            o.judgments_path = optarg;
            break;
        case 'K':
            o.keyphrases_path = optarg;
            break;
        case 'R':
            o.remove = 1;
            break;
        default:
            fprintf(
                ch == 'h' ? stdout : stderr,
                "usage: kprec replay -c FILE --items TSV [--rate N] [--count N] [--bad N]\n"
                "                    [--v0-every N] [--topic T] [--quiet]\n"
                "Publishes one ItemListed event per row of TSV (item_id<TAB>title, header row)\n"
                "to [topics] items, keyed by item_id.\n"
                "  --rate N      events per second (default: as fast as the broker takes them)\n"
                "  --count N     send N events, starting the file over with ids suffixed ~1, ~2..\n"
                "  --bad N       also send N malformed records (tests the dead-letter path)\n"
                "  --v0-every N  every Nth event uses the older ItemListed v0 schema\n"
                "Other streams (--keyphrases TSV gives the keyphrase texts):\n"
                "  --clicks LOG     AdEvents to [topics] clicks from a click log (kprec\n"
                "                   simulate-clicks: item_id keyphrase_id kind position ts)\n"
                "  --judgments TSV  Judgments to [topics] judgments (pair_id keyphrase_id item_id\n"
                "                   relevance 1..3; titles from --items)\n"
                "The keyphrase inventory (--keyphrases TSV alone: keyphrase_id, keyphrase):\n"
                "  one Keyphrase per row to the compacted [topics] inventory (or --topic;\n"
                "  default keyphrases.inventory), keyed by keyphrase_id; with --remove a\n"
                "  tombstone per row instead, which removes the keyphrase from the workers\n"
                "Example:\n"
                "  kprec replay -c /tmp/kp/kprec.ini --items items.tsv --count 1000 --rate 500\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (!o.items_path && !o.clicks_path && !o.keyphrases_path) {
        fprintf(stderr, "kprec replay: --items TSV is required\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    int rc = kp_replay_run(&c, &o);
    kp_config_free(&c);
    return rc;
}

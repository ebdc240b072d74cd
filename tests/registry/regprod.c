/* regprod.c - the "other producer" of tests/registry/test_registry_worker.sh: writes N ItemListed
 * records with a writer schema kprec's code does not have (a newer producer's), under the schema
 * id that producer registered, in the Confluent wire format.
 *
 *   kprec_regprod BOOTSTRAP TOPIC SCHEMA_ID SCHEMA.avsc ITEMS.tsv N PREFIX
 *
 * Record i: item_id PREFIX-i (also the key), title the title of row i of ITEMS.tsv (item_id<TAB>
 * title, a header line first), every other string field "<field>-i", doubles 1.5, ints and longs
 * i. Exits 0 once every record is acknowledged. */
#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, const char *why)
{
    fprintf(stderr, "regprod: %s: %s\n", what, why);
    return 1;
}

/* Sets field j of record value rec (schema rs) for record i. 0 / -1. */
static int set_field(avro_value_t *rec, avro_schema_t rs, size_t j, long i, const char *id,
                     const char *title)
{
    avro_value_t f;
    char s[512];
    const char *name = avro_schema_record_field_name(rs, (int)j);
    if (avro_value_get_by_index(rec, j, &f, NULL)) return -1;
    switch (avro_typeof(avro_schema_record_field_get_by_index(rs, (int)j))) {
    case AVRO_STRING:
        snprintf(s, sizeof s, "%s-%ld", name, i);
        return avro_value_set_string(&f, !strcmp(name, "item_id") ? id
                                         : !strcmp(name, "title") ? title
                                                                  : s);
    case AVRO_DOUBLE:
        return avro_value_set_double(&f, 1.5);
    case AVRO_INT64:
        return avro_value_set_long(&f, i);
    case AVRO_INT32:
        return avro_value_set_int(&f, (int32_t)i);
    default:
        return -1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 8) return die("usage", "BOOTSTRAP TOPIC SCHEMA_ID SCHEMA.avsc ITEMS.tsv N PREFIX");
    uint32_t sid = (uint32_t)strtoul(argv[3], NULL, 10);
    long n = strtol(argv[6], NULL, 10);
    char text[65536], errstr[512], line[8192], id[256];
    FILE *f = fopen(argv[4], "r");
    if (!f) return die(argv[4], "cannot open");
    size_t tl = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[tl] = 0;
    avro_schema_t rs;
    if (avro_schema_from_json_length(text, tl, &rs)) return die(argv[4], avro_strerror());
    avro_value_iface_t *cls = avro_generic_class_from_schema(rs);
    avro_value_t rec;
    if (!cls || avro_generic_value_new(cls, &rec)) return die("avro", avro_strerror());
    FILE *items = fopen(argv[5], "r");
    if (!items || !fgets(line, sizeof line, items)) return die(argv[5], "cannot read");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr))
        return die("conf", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) return die("rd_kafka_new", errstr);
    char *buf = malloc(1 << 20);
    avro_writer_t w = avro_writer_memory(buf + 5, (1 << 20) - 5);
    for (long i = 0; i < n; i++) {
        if (!fgets(line, sizeof line, items)) return die(argv[5], "too few rows");
        line[strcspn(line, "\r\n")] = 0;
        char *title = strchr(line, '\t');
        if (!title) return die(argv[5], "a row without a tab");
        title++;
        snprintf(id, sizeof id, "%s-%ld", argv[7], i);
        avro_value_reset(&rec);
        for (size_t j = 0; j < avro_schema_record_size(rs); j++)
            if (set_field(&rec, rs, j, i, id, title)) return die("field", avro_strerror());
        avro_writer_reset(w);
        if (avro_value_write(w, &rec)) return die("write", avro_strerror());
        size_t len = 5 + (size_t)avro_writer_tell(w);
        buf[0] = 0, buf[1] = (char)(sid >> 24), buf[2] = (char)(sid >> 16);
        buf[3] = (char)(sid >> 8), buf[4] = (char)sid;
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(id, strlen(id)),
                              RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END))
            return die("produce", "failed");
        rd_kafka_poll(rk, 0);
    }
    int left = rd_kafka_flush(rk, 30000) ? (int)rd_kafka_outq_len(rk) : 0;
    fprintf(stderr, "regprod: %ld records with schema id %u to %s, %d unacknowledged\n", n,
            (unsigned)sid, argv[2], left);
    rd_kafka_destroy(rk);
    avro_writer_free(w);
    free(buf);
    fclose(items);
    avro_value_decref(&rec);
    avro_value_iface_decref(cls);
    avro_schema_decref(rs);
    return left ? 1 : 0;
}

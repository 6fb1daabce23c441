/* A minimal client of the vehicle-mpc daemon in C: libzmq and msgpack-c, nothing else.
 *
 *   cc -O2 -o vehicle_mpc_client vehicle_mpc_client.c $(pkg-config --cflags --libs libzmq msgpack)
 *   ./vehicle_mpc_client tcp://127.0.0.1:5555 [steps]
 *
 * It pings, resets its episode, sends `steps` step requests (a car driving straight at 5 m/s,
 * 20 Hz stamps), asks for stats and prints one line per reply. Exit 0 when every reply came
 * and none was an error, 1 otherwise. The wire contract is docs/protocol.md: a DEALER sends
 * [empty frame, msgpack map]; keys and strings are msgpack str (never bin); numbers may come
 * back as any msgpack integer or float, so read them with number(). The routing id is set so
 * that a reconnect would keep this car's session.
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define TIMEOUT_MS 2000

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n); /* str, not bin: the daemon refuses bin keys and strings */
    msgpack_pack_str_body(pk, s, n);
}

static void pack_key_double(msgpack_packer *pk, const char *key, double value) {
    pack_str(pk, key);
    msgpack_pack_double(pk, value);
}

/* The value of `key` in a map, or NULL. */
static const msgpack_object *get(const msgpack_object *map, const char *key) {
    if (map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            memcmp(kv->key.via.str.ptr, key, n) == 0)
            return &kv->val;
    }
    return NULL;
}

/* Any msgpack number as a double (integers of any width, float32, float64); NaN otherwise. */
static double number(const msgpack_object *o) {
    if (o == NULL) return 0.0 / 0.0;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double)o->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return o->via.f64;
    default: return 0.0 / 0.0;
    }
}

static void print_str(const char *label, const msgpack_object *o) {
    if (o != NULL && o->type == MSGPACK_OBJECT_STR)
        printf(" %s=%.*s", label, (int)o->via.str.size, o->via.str.ptr);
}

/* Send [empty, body]; receive the reply whose seq matches into `result`. 0 on success. */
static int request(void *sock, msgpack_sbuffer *body, uint64_t seq, msgpack_unpacked *result) {
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, body->data, body->size, 0) < 0) {
        fprintf(stderr, "send failed: %s\n", zmq_strerror(zmq_errno()));
        return -1;
    }
    for (;;) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        int more = 1, got = -1;
        while (more) { /* the empty delimiter, then the body: keep the last frame */
            zmq_msg_close(&frame);
            zmq_msg_init(&frame);
            got = zmq_msg_recv(&frame, sock, 0);
            if (got < 0) {
                fprintf(stderr, "no reply within %d ms\n", TIMEOUT_MS);
                zmq_msg_close(&frame);
                return -1;
            }
            more = zmq_msg_more(&frame);
        }
        msgpack_unpacked_destroy(result);
        msgpack_unpacked_init(result);
        size_t offset = 0;
        int ok = msgpack_unpack_next(result, zmq_msg_data(&frame), zmq_msg_size(&frame), &offset);
        zmq_msg_close(&frame);
        if (ok != MSGPACK_UNPACK_SUCCESS) {
            fprintf(stderr, "reply is not msgpack\n");
            return -1;
        }
        const msgpack_object *s = get(&result->data, "seq");
        if (s != NULL && s->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s->via.u64 == seq) return 0;
        /* otherwise a late reply to an earlier request: drop it */
    }
}

static int is_error(const msgpack_object *reply) {
    const msgpack_object *t = get(reply, "type");
    if (t == NULL || t->type != MSGPACK_OBJECT_STR) return 1;
    if (t->via.str.size == 5 && memcmp(t->via.str.ptr, "error", 5) == 0) {
        printf("error");
        print_str("code", get(reply, "code"));
        print_str("message", get(reply, "message"));
        printf("\n");
        return 1;
    }
    return 0;
}

static void control(msgpack_sbuffer *buf, const char *type, uint64_t seq) {
    msgpack_packer pk;
    msgpack_sbuffer_clear(buf);
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "type");
    pack_str(&pk, type);
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, seq);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ENDPOINT [steps]\n", argv[0]);
        return 2;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 20;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, timeout = TIMEOUT_MS;
    const char routing_id[] = "c-client-1"; /* 1-255 bytes, not starting with a zero byte */
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sock, ZMQ_ROUTING_ID, routing_id, sizeof routing_id - 1);
    if (zmq_connect(sock, argv[1]) != 0) {
        fprintf(stderr, "connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_unpacked reply;
    msgpack_unpacked_init(&reply);
    int failed = 0;
    uint64_t seq = 1;

    control(&buf, "ping", seq);
    if (request(sock, &buf, seq, &reply) != 0 || is_error(&reply.data)) return 1;
    printf("pong");
    print_str("model", get(&reply.data, "model"));
    printf("\n");

    control(&buf, "reset", ++seq);
    if (request(sock, &buf, seq, &reply) != 0 || is_error(&reply.data)) return 1;
    printf("reset episode=%.0f\n", number(get(&reply.data, "episode")));

    double x = 0.0;
    for (int k = 0; k < steps; k++) {
        msgpack_packer pk;
        msgpack_sbuffer_clear(&buf);
        msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        pack_str(&pk, "type");
        pack_str(&pk, "step");
        pack_str(&pk, "seq");
        msgpack_pack_uint64(&pk, ++seq);
        pack_key_double(&pk, "stamp", 0.05 * k);
        pack_str(&pk, "state");
        msgpack_pack_map(&pk, 5);
        pack_key_double(&pk, "x", x);
        pack_key_double(&pk, "y", 0.0);
        pack_key_double(&pk, "yaw", 0.0);
        pack_key_double(&pk, "v", 5.0);
        pack_key_double(&pk, "steer", 0.0);
        if (request(sock, &buf, seq, &reply) != 0 || is_error(&reply.data)) {
            failed = 1;
            continue; /* hold the previous action; send a fresh state next period */
        }
        const msgpack_object *action = get(&reply.data, "action");
        printf("step seq=%llu", (unsigned long long)seq);
        print_str("status", get(&reply.data, "status"));
        printf(" steer_rate=%.4f accel=%.4f solve_ms=%.2f\n", number(get(action, "steer_rate")),
               number(get(action, "accel")), number(get(&reply.data, "solve_ms")));
        x += 5.0 * 0.05;
    }

    control(&buf, "stats", ++seq);
    if (request(sock, &buf, seq, &reply) != 0 || is_error(&reply.data)) return 1;
    printf("stats steps=%.0f errors=%.0f\n", number(get(&reply.data, "steps")), number(get(&reply.data, "errors")));

    msgpack_unpacked_destroy(&reply);
    msgpack_sbuffer_destroy(&buf);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return failed;
}

package spate;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Spate test client (Java, org.apache.kafka:kafka-clients 4.x).
 *
 * produce --bootstrap H:P --topic T --count N --acks all|1 --codec C --client NAME
 * consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
 * group-consume --bootstrap H:P --topic T --group G --member-name M [--assignor range|roundrobin|cooperative-sticky]
 *               [--commit sync|auto] [--max-records N] [--idle-exit-s S] [--session-timeout-ms MS] [--timeout-s S]
 *
 * Producer settings are the client defaults apart from acks/compression, so with acks=all
 * idempotence is on (InitProducerId + sequence numbers).
 */
public final class Client {
    static final long BASE_TS = 1700000000000L;
    static final String FILLER = "0123456789abcdefghijklmnopqrstuvwxyz";

    static String key(String client, int i) {
        return client + "-k" + (i % 500);
    }

    static String value(String client, int i) {
        String prefix = client + "-v" + i + "-";
        int target = 100 + (i % 101);
        StringBuilder sb = new StringBuilder(prefix);
        int j = 0;
        while (sb.length() < target) {
            sb.append(FILLER.charAt(j % FILLER.length()));
            j++;
        }
        return sb.toString();
    }

    static void usage(int code) {
        System.err.println("usage:\n  Client produce --bootstrap H:P --topic T --count N --acks all|1 "
                + "--codec gzip|snappy|lz4|zstd|none --client NAME\n"
                + "  Client consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S");
        System.exit(code);
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0 || argv[0].equals("--help") || argv[0].equals("-h")) {
            usage(argv.length == 0 ? 2 : 0);
        }
        String cmd = argv[0];
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            String a = argv[i];
            if (a.equals("--help") || a.equals("-h")) {
                usage(0);
            }
            if (!a.startsWith("--") || i + 1 >= argv.length) {
                System.err.println("bad argument: " + a);
                usage(2);
            }
            opts.put(a.substring(2), argv[++i]);
        }
        switch (cmd) {
            case "produce":
                System.exit(produce(opts));
                break;
            case "consume":
                System.exit(consume(opts));
                break;
            case "group-consume": {
                int rc = groupConsume(opts);
                EXIT_CODE = rc;
                // The shutdown hook (run by SIGTERM, or by this System.exit) waits for DONE, then
                // halts with EXIT_CODE.
                DONE.countDown();
                if (!SHUTTING_DOWN.get()) {
                    System.exit(rc);
                }
                break;
            }
            default:
                usage(2);
        }
    }

    static String req(Map<String, String> o, String k) {
        String v = o.get(k);
        if (v == null) {
            System.err.println("missing --" + k);
            usage(2);
        }
        return v;
    }

    static int produce(Map<String, String> o) throws Exception {
        String bootstrap = req(o, "bootstrap");
        String topic = req(o, "topic");
        int count = Integer.parseInt(req(o, "count"));
        String acks = o.getOrDefault("acks", "all");
        String codec = o.getOrDefault("codec", "zstd");
        String client = o.getOrDefault("client", "java");

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, acks);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, client);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");

        AtomicLong errors = new AtomicLong();
        AtomicReference<Exception> firstError = new AtomicReference<>();
        AtomicLong acked = new AtomicLong();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) {
                List<Header> headers = new ArrayList<>();
                headers.add(new RecordHeader("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8)));
                headers.add(new RecordHeader("client", client.getBytes(StandardCharsets.UTF_8)));
                ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null, BASE_TS + i,
                        key(client, i).getBytes(StandardCharsets.UTF_8),
                        value(client, i).getBytes(StandardCharsets.UTF_8), headers);
                producer.send(rec, (md, ex) -> {
                    if (ex != null) {
                        errors.incrementAndGet();
                        firstError.compareAndSet(null, ex);
                    } else {
                        acked.incrementAndGet();
                    }
                });
            }
            producer.flush();
        }
        System.err.println("java produce: acked=" + acked.get() + " errors=" + errors.get());
        if (errors.get() > 0 || acked.get() != count) {
            System.err.println("delivery failed: " + firstError.get());
            return 1;
        }
        return 0;
    }

    static int consume(Map<String, String> o) {
        String bootstrap = req(o, "bootstrap");
        String topic = req(o, "topic");
        int partitions = Integer.parseInt(req(o, "partitions"));
        long expect = Long.parseLong(req(o, "expect"));
        double timeoutS = Double.parseDouble(o.getOrDefault("timeout-s", "60"));

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        long got = 0;
        long deadline = System.nanoTime() + (long) (timeoutS * 1e9);
        StringBuilder out = new StringBuilder();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            while (got < expect && System.nanoTime() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    out.setLength(0);
                    out.append("{\"partition\":").append(r.partition())
                            .append(",\"offset\":").append(r.offset())
                            .append(",\"key\":").append(jstr(r.key()))
                            .append(",\"value\":").append(jstr(r.value()))
                            .append(",\"headers\":[");
                    boolean first = true;
                    for (Header h : r.headers()) {
                        if (!first) {
                            out.append(',');
                        }
                        first = false;
                        out.append('[').append(jstr(h.key())).append(',').append(jstr(h.value())).append(']');
                    }
                    out.append("],\"timestamp\":").append(r.timestamp()).append('}');
                    System.out.println(out);
                    got++;
                }
            }
        }
        System.out.flush();
        System.err.println("java consume: got=" + got + " expected=" + expect);
        return got >= expect ? 0 : 1;
    }

    static final AtomicBoolean SHUTTING_DOWN = new AtomicBoolean();
    static final CountDownLatch DONE = new CountDownLatch(1);
    static volatile int EXIT_CODE = 0;

    static synchronized void line(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static String ints(Collection<Integer> xs) {
        StringBuilder sb = new StringBuilder("[");
        boolean first = true;
        for (int x : new TreeSet<>(xs)) {
            if (!first) {
                sb.append(',');
            }
            first = false;
            sb.append(x);
        }
        return sb.append(']').toString();
    }

    static void partsEvent(String member, String ev, Collection<TopicPartition> tps, TreeSet<Integer> owned) {
        List<Integer> ps = new ArrayList<>();
        for (TopicPartition tp : tps) {
            ps.add(tp.partition());
        }
        if (ev.equals("assigned")) {
            owned.addAll(ps);
        } else {
            owned.removeAll(ps);
        }
        line("{\"event\":\"" + ev + "\",\"member\":" + jstr(member) + ",\"partitions\":" + ints(ps)
                + ",\"owned\":" + ints(owned) + "}");
    }

    static int groupConsume(Map<String, String> o) {
        String bootstrap = req(o, "bootstrap");
        String topic = req(o, "topic");
        String group = req(o, "group");
        String member = req(o, "member-name");
        String assignor = o.getOrDefault("assignor", "range");
        boolean auto = o.getOrDefault("commit", "sync").equals("auto");
        long maxRecords = Long.parseLong(o.getOrDefault("max-records", "0"));
        double idleExitS = Double.parseDouble(o.getOrDefault("idle-exit-s", "0"));
        String sessionMs = o.getOrDefault("session-timeout-ms", "6000");
        double timeoutS = Double.parseDouble(o.getOrDefault("timeout-s", "600"));
        String assignorClass;
        switch (assignor) {
            case "range": assignorClass = RangeAssignor.class.getName(); break;
            case "roundrobin": assignorClass = RoundRobinAssignor.class.getName(); break;
            case "cooperative-sticky": assignorClass = CooperativeStickyAssignor.class.getName(); break;
            default:
                System.err.println("bad --assignor " + assignor);
                return 2;
        }

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, member);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, sessionMs);
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "30000");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, Boolean.toString(auto));
        p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "1000");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Long.toString(maxRecords > 0 ? Math.min(500, maxRecords) : 500));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p);
        Thread mainThread = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            SHUTTING_DOWN.set(true);
            if (DONE.getCount() > 0) {
                try {
                    consumer.wakeup();
                } catch (RuntimeException e) {
                    // already closed
                }
            }
            try {
                DONE.await();
            } catch (InterruptedException e) {
                // exit anyway
            }
            Runtime.getRuntime().halt(EXIT_CODE);
        }));
        TreeSet<Integer> owned = new TreeSet<>();
        Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
        Runnable commit = () -> {
            if (auto || pending.isEmpty()) {
                return;
            }
            try {
                consumer.commitSync(pending);
            } catch (WakeupException e) {
                consumer.commitSync(pending);  // the wakeup only interrupts; retry once
            } catch (Exception e) {
                line("{\"event\":\"commit_failed\",\"member\":" + jstr(member) + ",\"error\":" + jstr(e.toString()) + "}");
                System.err.println("commit failed: " + e);
                return;
            }
            StringBuilder sb = new StringBuilder();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : new TreeMap<Integer, Map.Entry<TopicPartition, OffsetAndMetadata>>() {{
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> x : pending.entrySet()) {
                        put(x.getKey().partition(), x);
                    }
                }}.values()) {
                if (sb.length() > 0) {
                    sb.append(',');
                }
                sb.append('"').append(e.getKey().partition()).append("\":").append(e.getValue().offset());
            }
            line("{\"event\":\"committed\",\"member\":" + jstr(member) + ",\"offsets\":{" + sb + "}}");
            pending.clear();
        };
        consumer.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                commit.run();
                partsEvent(member, "revoked", parts, owned);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                partsEvent(member, "assigned", parts, owned);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> parts) {
                pending.clear();
                partsEvent(member, "lost", parts, owned);
            }
        });
        long got = 0;
        long start = System.nanoTime();
        long last = start;
        String reason = "timeout";
        StringBuilder out = new StringBuilder();
        try {
            while (true) {
                long now = System.nanoTime();
                if (SHUTTING_DOWN.get()) {
                    reason = "signal";
                    break;
                }
                if (maxRecords > 0 && got >= maxRecords) {
                    reason = "max-records";
                    break;
                }
                if (idleExitS > 0 && now - last > (long) (idleExitS * 1e9)) {
                    reason = "idle";
                    break;
                }
                if (now - start > (long) (timeoutS * 1e9)) {
                    break;
                }
                ConsumerRecords<byte[], byte[]> recs;
                try {
                    recs = consumer.poll(Duration.ofMillis(500));
                } catch (WakeupException e) {
                    reason = "signal";
                    break;
                }
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    out.setLength(0);
                    out.append("{\"event\":\"record\",\"member\":").append(jstr(member))
                            .append(",\"partition\":").append(r.partition())
                            .append(",\"offset\":").append(r.offset())
                            .append(",\"key\":").append(jstr(r.key()))
                            .append(",\"value\":").append(jstr(r.value()))
                            .append(",\"headers\":[");
                    boolean first = true;
                    for (Header h : r.headers()) {
                        if (!first) {
                            out.append(',');
                        }
                        first = false;
                        out.append('[').append(jstr(h.key())).append(',').append(jstr(h.value())).append(']');
                    }
                    out.append("],\"timestamp\":").append(r.timestamp()).append('}');
                    line(out.toString());
                    pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    got++;
                    last = System.nanoTime();
                }
                commit.run();
            }
            commit.run();
        } finally {
            line("{\"event\":\"exit\",\"member\":" + jstr(member) + ",\"reason\":\"" + reason + "\",\"consumed\":" + got + "}");
            try {
                consumer.close();  // LeaveGroup
            } catch (WakeupException e) {
                consumer.close();
            }
        }
        System.err.println("java group-consume " + member + ": got=" + got + " exit=" + reason);
        return 0;
    }

    static String jstr(byte[] b) {
        return b == null ? "null" : jstr(new String(b, StandardCharsets.UTF_8));
    }

    static String jstr(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder(s.length() + 2);
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        return sb.append('"').toString();
    }
}

// Spate test client (Go, github.com/twmb/franz-go/pkg/kgo).
//
// Security (TLS, SASL) from SPATE_* environment variables: see security.go.
//
//	produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip|snappy|lz4|zstd --client NAME
//	consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
//	group-consume --bootstrap H:P --topic T --group G --member-name M [--assignor range|roundrobin|cooperative-sticky]
//	              [--commit sync|auto] [--max-records N] [--idle-exit-s S] [--session-timeout-ms MS] [--timeout-s S]
//
// franz-go enables idempotent writes by default (they need acks=all; acks=1 disables them).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const baseTS = int64(1700000000000)
const filler = "0123456789abcdefghijklmnopqrstuvwxyz"

func key(client string, i int) string { return fmt.Sprintf("%s-k%d", client, i%500) }

func value(client string, i int) string {
	var sb strings.Builder
	sb.WriteString(fmt.Sprintf("%s-v%d-", client, i))
	target := 100 + i%101
	for j := 0; sb.Len() < target; j++ {
		sb.WriteByte(filler[j%len(filler)])
	}
	return sb.String()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage:\n  spate-go-client produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip|snappy|lz4|zstd|none --client NAME\n  spate-go-client consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "--help" || os.Args[1] == "-h" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		os.Exit(0)
	}
	switch os.Args[1] {
	case "produce":
		os.Exit(produce(os.Args[2:]))
	case "consume":
		os.Exit(consume(os.Args[2:]))
	case "group-consume":
		os.Exit(groupConsume(os.Args[2:]))
	default:
		usage()
		os.Exit(2)
	}
}

func produce(args []string) int {
	fs := flag.NewFlagSet("produce", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "bootstrap server")
	topic := fs.String("topic", "", "topic")
	count := fs.Int("count", 0, "records to produce")
	acks := fs.String("acks", "all", "all|1")
	codec := fs.String("codec", "snappy", "gzip|snappy|lz4|zstd|none")
	client := fs.String("client", "go", "client name used in keys/values")
	_ = fs.Parse(args)

	opts := []kgo.Opt{
		kgo.SeedBrokers(*bootstrap),
		kgo.ClientID(*client),
		kgo.DefaultProduceTopic(*topic),
		kgo.ProducerLinger(5 * time.Millisecond),
		// No RecordDeliveryTimeout: franz-go measures it from Record.Timestamp, and these records
		// carry explicit 2023 CreateTimes, so every record would count as expired at once.
	}
	switch *acks {
	case "all", "-1":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	default:
		fmt.Fprintln(os.Stderr, "bad --acks", *acks)
		return 2
	}
	switch *codec {
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	case "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	default:
		fmt.Fprintln(os.Stderr, "bad --codec", *codec)
		return 2
	}
	cl, err := kgo.NewClient(withSecurity(opts...)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	defer cl.Close()

	var wg sync.WaitGroup
	var failed, acked atomic.Int64
	var firstErr atomic.Value
	ctx := context.Background()
	for i := 0; i < *count; i++ {
		r := &kgo.Record{
			Key:       []byte(key(*client, i)),
			Value:     []byte(value(*client, i)),
			Timestamp: time.UnixMilli(baseTS + int64(i)),
			Headers: []kgo.RecordHeader{
				{Key: "i", Value: []byte(strconv.Itoa(i))},
				{Key: "client", Value: []byte(*client)},
			},
		}
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				acked.Add(1)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "flush:", err)
		return 1
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "go produce: acked=%d errors=%d\n", acked.Load(), failed.Load())
	if failed.Load() > 0 || acked.Load() != int64(*count) {
		fmt.Fprintln(os.Stderr, "delivery failed:", firstErr.Load())
		return 1
	}
	return 0
}

type outRec struct {
	Partition int32       `json:"partition"`
	Offset    int64       `json:"offset"`
	Key       *string     `json:"key"`
	Value     *string     `json:"value"`
	Headers   [][2]string `json:"headers"`
	Timestamp int64       `json:"timestamp"`
}

func strp(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func consume(args []string) int {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "bootstrap server")
	topic := fs.String("topic", "", "topic")
	partitions := fs.Int("partitions", 1, "partition count")
	expect := fs.Int("expect", 0, "records to wait for")
	timeoutS := fs.Float64("timeout-s", 60, "give up after this many seconds")
	_ = fs.Parse(args)

	parts := map[int32]kgo.Offset{}
	for p := 0; p < *partitions; p++ {
		parts[int32(p)] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(withSecurity(
		kgo.SeedBrokers(*bootstrap),
		kgo.ClientID("go-consumer"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{*topic: parts}),
	)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	defer cl.Close()

	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutS*float64(time.Second)))
	defer cancel()
	got := 0
	for got < *expect {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(os.Stderr, "fetch error %s/%d: %v\n", t, p, err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			hs := make([][2]string, 0, len(r.Headers))
			for _, h := range r.Headers {
				hs = append(hs, [2]string{h.Key, string(h.Value)})
			}
			_ = enc.Encode(outRec{r.Partition, r.Offset, strp(r.Key), strp(r.Value), hs, r.Timestamp.UnixMilli()})
			got++
		})
	}
	w.Flush()
	fmt.Fprintf(os.Stderr, "go consume: got=%d expected=%d\n", got, *expect)
	if got < *expect {
		return 1
	}
	return 0
}

// groupOut writes the group-consume JSON lines, one flushed line per event.
type groupOut struct {
	mu     sync.Mutex
	member string
	owned  map[int32]bool
}

func (g *groupOut) line(v any) {
	b, _ := json.Marshal(v)
	g.mu.Lock()
	os.Stdout.Write(append(b, '\n'))
	g.mu.Unlock()
}

func sortedParts(ps []int32) []int32 {
	out := append([]int32{}, ps...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (g *groupOut) parts(ev string, ps []int32) {
	g.mu.Lock()
	for _, p := range ps {
		if ev == "assigned" {
			g.owned[p] = true
		} else {
			delete(g.owned, p)
		}
	}
	owned := []int32{}
	for p := range g.owned {
		owned = append(owned, p)
	}
	g.mu.Unlock()
	if ps == nil {
		ps = []int32{}
	}
	g.line(map[string]any{"event": ev, "member": g.member, "partitions": sortedParts(ps), "owned": sortedParts(owned)})
}

type groupRec struct {
	Event     string      `json:"event"`
	Member    string      `json:"member"`
	Partition int32       `json:"partition"`
	Offset    int64       `json:"offset"`
	Key       *string     `json:"key"`
	Value     *string     `json:"value"`
	Headers   [][2]string `json:"headers"`
	Timestamp int64       `json:"timestamp"`
}

func groupConsume(args []string) int {
	fs := flag.NewFlagSet("group-consume", flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "bootstrap server")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "consumer group")
	member := fs.String("member-name", "", "member name (client id)")
	assignor := fs.String("assignor", "range", "range|roundrobin|cooperative-sticky")
	commitMode := fs.String("commit", "sync", "sync|auto")
	maxRecords := fs.Int("max-records", 0, "exit after this many records (0: no limit)")
	idleExitS := fs.Float64("idle-exit-s", 0, "exit after this many seconds without records (0: never)")
	sessionMs := fs.Int("session-timeout-ms", 6000, "session timeout")
	timeoutS := fs.Float64("timeout-s", 600, "hard limit")
	_ = fs.Parse(args)

	var balancer kgo.GroupBalancer
	switch *assignor {
	case "range":
		balancer = kgo.RangeBalancer()
	case "roundrobin":
		balancer = kgo.RoundRobinBalancer()
	case "cooperative-sticky":
		balancer = kgo.CooperativeStickyBalancer()
	default:
		fmt.Fprintln(os.Stderr, "bad --assignor", *assignor)
		return 2
	}
	auto := *commitMode == "auto"
	out := &groupOut{member: *member, owned: map[int32]bool{}}
	var pmu sync.Mutex
	pending := map[int32]int64{}

	var cl *kgo.Client
	// autoFinal: with --commit auto, what was polled is committed before partitions are given up
	// (franz-go leaves that to an overridden OnPartitionsRevoked) and before the client closes.
	autoFinal := func(ctx context.Context) {
		if !auto {
			return
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			out.line(map[string]any{"event": "commit_failed", "member": *member, "error": err.Error()})
			fmt.Fprintln(os.Stderr, "commit failed:", err)
		}
	}
	commit := func(ctx context.Context) {
		pmu.Lock()
		defer pmu.Unlock()
		if auto || len(pending) == 0 {
			return
		}
		offs := map[string]map[int32]kgo.EpochOffset{*topic: {}}
		for p, o := range pending {
			offs[*topic][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
		var cerr error
		cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, e)
					}
				}
			}
		})
		if cerr != nil {
			out.line(map[string]any{"event": "commit_failed", "member": *member, "error": cerr.Error()})
			fmt.Fprintln(os.Stderr, "commit failed:", cerr)
			return
		}
		done := map[string]int64{}
		for p, o := range pending {
			done[strconv.Itoa(int(p))] = o
		}
		out.line(map[string]any{"event": "committed", "member": *member, "offsets": done})
		pending = map[int32]int64{}
	}

	opts := []kgo.Opt{
		kgo.SeedBrokers(*bootstrap),
		kgo.ClientID(*member),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(*topic),
		kgo.Balancers(balancer),
		kgo.SessionTimeout(time.Duration(*sessionMs) * time.Millisecond),
		kgo.HeartbeatInterval(time.Second),
		kgo.RebalanceTimeout(30 * time.Second),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			out.parts("assigned", m[*topic])
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			commit(ctx)
			autoFinal(ctx)
			out.parts("revoked", m[*topic])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			pmu.Lock()
			pending = map[int32]int64{}
			pmu.Unlock()
			out.parts("lost", m[*topic])
		}),
	}
	if auto {
		opts = append(opts, kgo.AutoCommitInterval(time.Second))
	} else {
		opts = append(opts, kgo.DisableAutoCommit())
	}
	var err error
	cl, err = kgo.NewClient(withSecurity(opts...)...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	var stopped atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		stopped.Store(true)
	}()

	got := 0
	start := time.Now()
	last := start
	reason := "timeout"
	bg := context.Background()
	for {
		if stopped.Load() {
			reason = "signal"
			break
		}
		if *maxRecords > 0 && got >= *maxRecords {
			reason = "max-records"
			break
		}
		if *idleExitS > 0 && time.Since(last).Seconds() > *idleExitS {
			reason = "idle"
			break
		}
		if time.Since(start).Seconds() > *timeoutS {
			break
		}
		limit := 500
		if *maxRecords > 0 && *maxRecords-got < limit {
			limit = *maxRecords - got
		}
		ctx, cancel := context.WithTimeout(bg, 500*time.Millisecond)
		fetches := cl.PollRecords(ctx, limit)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				fmt.Fprintf(os.Stderr, "fetch error %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			hs := make([][2]string, 0, len(r.Headers))
			for _, h := range r.Headers {
				hs = append(hs, [2]string{h.Key, string(h.Value)})
			}
			out.line(groupRec{"record", *member, r.Partition, r.Offset, strp(r.Key), strp(r.Value), hs, r.Timestamp.UnixMilli()})
			pmu.Lock()
			pending[r.Partition] = r.Offset + 1
			pmu.Unlock()
			got++
			last = time.Now()
		})
		commit(bg)
		cl.AllowRebalance()
	}
	commit(bg)
	autoFinal(bg)
	out.line(map[string]any{"event": "exit", "member": *member, "reason": reason, "consumed": got})
	cl.CloseAllowingRebalance() // LeaveGroup
	fmt.Fprintf(os.Stderr, "go group-consume %s: got=%d exit=%s\n", *member, got, reason)
	return 0
}

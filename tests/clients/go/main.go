// Spate test client (Go, github.com/twmb/franz-go/pkg/kgo).
//
//	produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip|snappy|lz4|zstd --client NAME
//	consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
	cl, err := kgo.NewClient(opts...)
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
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(*bootstrap),
		kgo.ClientID("go-consumer"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{*topic: parts}),
	)
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

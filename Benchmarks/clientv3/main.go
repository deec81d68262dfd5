// clientv3-bench: the cross-checks of the side-by-side figures that need Go's etcd client
// (what etcdctl and most users run) rather than swetcd-benchmark's Swift client.
//
//	put      puts through clientv3, as etcd's `benchmark put` (one clientv3.Client per --conns,
//	         --clients goroutines over them); prints requests/s and latency percentiles.
//	limiter  how many requests/s the rate limiter of `etcdctl check perf` (golang.org/x/time/rate,
//	         burst 1) lets through in a process doing nothing else, for --rate (check perf's
//	         --load=l asks 8,000, --load=xl 15,000); prints that number.
//
// Built against Debian's Go sources (golang-etcd-server-dev), without fetching anything:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o clientv3-bench Benchmarks/clientv3/main.go
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"golang.org/x/time/rate"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clientv3-bench put|limiter [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "put":
		put(os.Args[2:])
	case "limiter":
		limiter(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func put(args []string) {
	fs := flag.NewFlagSet("put", flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	conns := fs.Int("conns", 1, "clients (gRPC connections)")
	clients := fs.Int("clients", 1, "concurrent requests")
	total := fs.Int("total", 10000, "puts in all")
	keySize := fs.Int("key-size", 8, "key size in bytes")
	valSize := fs.Int("val-size", 8, "value size in bytes")
	keySpace := fs.Int("key-space-size", 1, "sequential keys modulo this (with --sequential-keys)")
	sequential := fs.Bool("sequential-keys", false, "keys 0, 1, 2, ... (else random)")
	fs.Parse(args)

	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			os.Exit(1)
		}
		defer c.Close()
		cs[i] = c
	}
	value := string(make([]byte, *valSize))
	var next int64 = -1
	var failed int64
	latencies := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cli := cs[c%len(cs)]
			key := make([]byte, *keySize)
			rnd := rand.New(rand.NewSource(int64(c)))
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(*total) {
					return
				}
				if *sequential {
					binary.PutUvarint(key, uint64(int(i)%*keySpace))
				} else {
					rnd.Read(key)
				}
				t := time.Now()
				if _, err := cli.Put(context.Background(), string(key), value); err != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				latencies[c] = append(latencies[c], time.Since(t))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(q float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000
	}
	rps := float64(len(all)) / elapsed.Seconds()
	fmt.Printf("Requests/sec: %.1f\nLatency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\nErrors: %d\n",
		rps, ms(0.5), ms(0.9), ms(0.99), failed)
	// The same last line as swetcd-benchmark's, for the side-by-side runner.
	fmt.Printf("JSON {\"requests_per_s\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"total\": %d, \"errors\": %d}\n",
		rps, ms(0.5), ms(0.9), ms(0.99), len(all)+int(failed), failed)
}

func limiter(args []string) {
	fs := flag.NewFlagSet("limiter", flag.ExitOnError)
	limit := fs.Int("rate", 8000, "the limit asked (requests/s)")
	seconds := fs.Int("seconds", 3, "how long to measure")
	fs.Parse(args)
	lim := rate.NewLimiter(rate.Limit(*limit), 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*seconds)*time.Second)
	defer cancel()
	n := 0
	for lim.Wait(ctx) == nil {
		n++
	}
	fmt.Printf("%d\n", n / *seconds)
}

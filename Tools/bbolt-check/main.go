// bbolt-check: the real bbolt (go.etcd.io/bbolt, Debian's golang-github-coreos-bbolt-dev)
// against files written by swetcd's Backend, and the other way round.
//
//	bbolt-check check <db>            open read-only, run tx.Check(), print each error; exit 1 if any
//	bbolt-check dump <db>             print every bucket, key and value (format below)
//	bbolt-check info <db>             print the meta and page counts by type
//	bbolt-check stats <db>            print bbolt's BucketStats of each top-level bucket
//	bbolt-check run <script> <db>     apply a script of operations with bbolt (format below)
//
// Dump format, one line each, in key order, depth first (names, keys, values in hex; "-" for
// empty):
//
//	B <path> seq=<n>            a bucket (path: hex names joined by "/")
//	K <path> <key> <value>      a key in the bucket at <path>
//
// Script format, one operation a line:
//
//	open <pageSize> <noFreelistSync 0|1>   (re)open the db with these options
//	close
//	begin | commit | rollback
//	fill <path> <percent>                  bucket.FillPercent for the rest of the tx
//	create <path>                          create the bucket (parents must exist)
//	delbucket <path>
//	put <path> <key> <value>
//	del <path> <key>
//	seq <path> <n>
//	putn <path> <prefix> <first> <count> <valueSize> <seed>
//	                                       count keys prefix+%016x(first+i), values of
//	                                       valueSize pseudo-random bytes (xorshift from seed)
//	deln <path> <prefix> <first> <count> <step>
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "bbolt-check: "+format+"\n", args...)
	os.Exit(2)
}

func hx(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func unhex(s string) []byte {
	if s == "-" {
		return []byte{}
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		die("bad hex %q: %v", s, err)
	}
	return b
}

func parsePath(s string) [][]byte {
	var out [][]byte
	for _, p := range strings.Split(s, "/") {
		out = append(out, unhex(p))
	}
	return out
}

func main() {
	if len(os.Args) < 3 {
		die("usage: bbolt-check check|dump|info <db> | run <script> <db>")
	}
	switch os.Args[1] {
	case "check":
		os.Exit(check(os.Args[2]))
	case "dump":
		dump(os.Args[2])
	case "info":
		info(os.Args[2])
	case "stats":
		stats(os.Args[2])
	case "run":
		if len(os.Args) < 4 {
			die("run <script> <db>")
		}
		run(os.Args[2], os.Args[3])
	default:
		die("unknown command %q", os.Args[1])
	}
}

func openRO(path string) *bolt.DB {
	db, err := bolt.Open(path, 0600, &bolt.Options{ReadOnly: true})
	if err != nil {
		die("open %s: %v", path, err)
	}
	return db
}

func check(path string) int {
	db := openRO(path)
	defer db.Close()
	n := 0
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			fmt.Println(err)
			n++
		}
		return nil
	})
	if err != nil {
		die("view: %v", err)
	}
	if n > 0 {
		return 1
	}
	fmt.Println("OK")
	return 0
}

func dumpBucket(w *bufio.Writer, b *bolt.Bucket, path string) {
	fmt.Fprintf(w, "B %s seq=%d\n", path, b.Sequence())
	c := b.Cursor()
	var subs [][]byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil && b.Bucket(k) != nil {
			subs = append(subs, append([]byte(nil), k...))
			fmt.Fprintf(w, "K %s %s bucket\n", path, hx(k))
			continue
		}
		fmt.Fprintf(w, "K %s %s %s\n", path, hx(k), hx(v))
	}
	for _, k := range subs {
		dumpBucket(w, b.Bucket(k), path+"/"+hx(k))
	}
}

func dump(path string) {
	db := openRO(path)
	defer db.Close()
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			dumpBucket(w, b, hx(name))
			return nil
		})
	})
	if err != nil {
		die("dump: %v", err)
	}
}

func info(path string) {
	db := openRO(path)
	defer db.Close()
	err := db.View(func(tx *bolt.Tx) error {
		// Check loads the free list of a read-only db (Page needs it).
		for range tx.Check() {
		}
		fmt.Printf("txid=%d size=%d pageSize=%d\n", tx.ID(), tx.Size(), db.Info().PageSize)
		types := map[string]int{}
		for i := 0; ; i++ {
			p, err := tx.Page(i)
			if err != nil {
				return err
			}
			if p == nil {
				break
			}
			types[p.Type]++
		}
		var names []string
		for k := range types {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Printf("pages.%s=%d\n", k, types[k])
		}
		return nil
	})
	if err != nil {
		die("info: %v", err)
	}
}

// stats prints bbolt's BucketStats of every top-level bucket.
func stats(path string) {
	db := openRO(path)
	defer db.Close()
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			s := b.Stats()
			fmt.Printf("%s branch=%d branchOverflow=%d leaf=%d leafOverflow=%d keys=%d depth=%d branchInuse=%d leafInuse=%d buckets=%d inline=%d inlineInuse=%d\n",
				hx(name), s.BranchPageN, s.BranchOverflowN, s.LeafPageN, s.LeafOverflowN, s.KeyN, s.Depth,
				s.BranchInuse, s.LeafInuse, s.BucketN, s.InlineBucketN, s.InlineBucketInuse)
			return nil
		})
	})
	if err != nil {
		die("stats: %v", err)
	}
}

type xorshift struct{ s uint64 }

func (x *xorshift) next() uint64 {
	x.s ^= x.s << 13
	x.s ^= x.s >> 7
	x.s ^= x.s << 17
	return x.s
}

func run(script, path string) {
	f, err := os.Open(script)
	if err != nil {
		die("%v", err)
	}
	defer f.Close()
	var db *bolt.DB
	var tx *bolt.Tx
	buckets := map[string]*bolt.Bucket{}
	bucket := func(p string) *bolt.Bucket {
		if b, ok := buckets[p]; ok {
			return b
		}
		parts := parsePath(p)
		b := tx.Bucket(parts[0])
		for _, n := range parts[1:] {
			if b == nil {
				break
			}
			b = b.Bucket(n)
		}
		if b == nil {
			die("no bucket %s", p)
		}
		buckets[p] = b
		return b
	}
	must := func(err error, what string) {
		if err != nil {
			die("%s: %v", what, err)
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	line := 0
	for sc.Scan() {
		line++
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		atoi := func(i int) int64 {
			n, err := strconv.ParseInt(fs[i], 10, 64)
			if err != nil {
				die("line %d: %v", line, err)
			}
			return n
		}
		switch fs[0] {
		case "open":
			if db != nil {
				must(db.Close(), "close")
			}
			db, err = bolt.Open(path, 0600, &bolt.Options{PageSize: int(atoi(1)), NoFreelistSync: fs[2] == "1"})
			must(err, "open")
		case "close":
			must(db.Close(), "close")
			db = nil
		case "begin":
			tx, err = db.Begin(true)
			must(err, "begin")
			buckets = map[string]*bolt.Bucket{}
		case "commit":
			must(tx.Commit(), "commit")
			tx = nil
		case "rollback":
			must(tx.Rollback(), "rollback")
			tx = nil
		case "fill":
			v, err := strconv.ParseFloat(fs[2], 64)
			must(err, "fill")
			bucket(fs[1]).FillPercent = v
		case "create":
			parts := parsePath(fs[1])
			if len(parts) == 1 {
				_, err = tx.CreateBucket(parts[0])
			} else {
				parent := strings.Join(strings.Split(fs[1], "/")[:len(parts)-1], "/")
				_, err = bucket(parent).CreateBucket(parts[len(parts)-1])
			}
			must(err, "create "+fs[1])
		case "delbucket":
			parts := parsePath(fs[1])
			if len(parts) == 1 {
				err = tx.DeleteBucket(parts[0])
			} else {
				parent := strings.Join(strings.Split(fs[1], "/")[:len(parts)-1], "/")
				err = bucket(parent).DeleteBucket(parts[len(parts)-1])
			}
			must(err, "delbucket "+fs[1])
			for k := range buckets {
				if k == fs[1] || strings.HasPrefix(k, fs[1]+"/") {
					delete(buckets, k)
				}
			}
		case "put":
			must(bucket(fs[1]).Put(unhex(fs[2]), unhex(fs[3])), "put")
		case "del":
			must(bucket(fs[1]).Delete(unhex(fs[2])), "del")
		case "seq":
			must(bucket(fs[1]).SetSequence(uint64(atoi(2))), "seq")
		case "putn":
			b := bucket(fs[1])
			prefix := unhex(fs[2])
			first, count, size := atoi(3), atoi(4), atoi(5)
			rng := xorshift{uint64(atoi(6)) | 1}
			for i := int64(0); i < count; i++ {
				k := append(append([]byte(nil), prefix...), []byte(fmt.Sprintf("%016x", first+i))...)
				v := make([]byte, size)
				for j := range v {
					v[j] = byte(rng.next())
				}
				must(b.Put(k, v), "putn")
			}
		case "deln":
			b := bucket(fs[1])
			prefix := unhex(fs[2])
			first, count, step := atoi(3), atoi(4), atoi(5)
			for i := int64(0); i < count; i++ {
				k := append(append([]byte(nil), prefix...), []byte(fmt.Sprintf("%016x", first+i*step))...)
				must(b.Delete(k), "deln")
			}
		default:
			die("line %d: unknown op %q", line, fs[0])
		}
	}
	must(sc.Err(), "read script")
	if tx != nil {
		must(tx.Commit(), "commit")
	}
	if db != nil {
		must(db.Close(), "close")
	}
}

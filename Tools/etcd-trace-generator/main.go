// Records a trace of random KV requests against a real etcd 3.4.23, with etcd's responses:
// the data of Tests/MVCCTests/EtcdTrace1.swift and EtcdTrace2.swift.
// Build: GO111MODULE=off GOPATH=/usr/share/gocode go build -o gen main.go
// Run against a fresh etcd: ./gen <seed: 1 or 2> 1500 127.0.0.1:<port> > trace<seed>.txt 2>/dev/null
// Generates a trace of random KV requests run against a real etcd, with etcd's responses.
package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"

	"github.com/gogo/protobuf/jsonpb"
	"github.com/gogo/protobuf/proto"
	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc/status"
)

var (
	r          *rand.Rand
	cur        int64 = 1
	compactRev int64 = -1
	vals             = []string{"", "v0", "v1", "v2", "v3", "zz"}
)

func key() []byte {
	if r.Intn(10) == 0 {
		return []byte(fmt.Sprintf("p/%d", r.Intn(5)))
	}
	return []byte(fmt.Sprintf("k%02d", r.Intn(40)))
}

func rangeEnd() []byte {
	switch r.Intn(10) {
	case 0, 1, 2, 3:
		return nil
	case 4, 5, 6:
		return key()
	case 7:
		return []byte{0}
	case 8:
		return []byte("l")
	default:
		return []byte(fmt.Sprintf("k%d", r.Intn(5)))
	}
}

func rev() int64 {
	k := r.Intn(10)
	if k < 6 {
		return 0
	}
	if k < 9 {
		lo := compactRev - 1
		if lo < -1 {
			lo = -1
		}
		return lo + r.Int63n(cur+3-lo)
	}
	return r.Int63n(cur+4) - 1
}

func rangeReq() *pb.RangeRequest {
	q := &pb.RangeRequest{Key: key(), RangeEnd: rangeEnd(), Revision: rev()}
	if r.Intn(2) == 0 {
		q.Limit = r.Int63n(12)
	}
	if r.Intn(10) < 4 {
		q.SortOrder = pb.RangeRequest_SortOrder(r.Intn(3))
		q.SortTarget = pb.RangeRequest_SortTarget(r.Intn(5))
	}
	q.KeysOnly = r.Intn(10) == 0
	q.CountOnly = r.Intn(10) == 0
	q.Serializable = r.Intn(4) == 0
	if r.Intn(10) == 0 {
		q.MinModRevision = r.Int63n(cur + 1)
	}
	if r.Intn(10) == 0 {
		q.MaxModRevision = r.Int63n(cur + 1)
	}
	if r.Intn(10) == 0 {
		q.MinCreateRevision = r.Int63n(cur + 1)
	}
	if r.Intn(10) == 0 {
		q.MaxCreateRevision = r.Int63n(cur + 1)
	}
	return q
}

func putReq() *pb.PutRequest {
	q := &pb.PutRequest{Key: key(), Value: []byte(vals[r.Intn(len(vals))])}
	q.PrevKv = r.Intn(3) == 0
	if r.Intn(15) == 0 {
		q.IgnoreValue = true
		q.Value = nil
	}
	if r.Intn(20) == 0 {
		q.IgnoreLease = true
	}
	if r.Intn(60) == 0 && !q.IgnoreLease {
		q.Lease = 1234
	}
	return q
}

func delReq() *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: key(), RangeEnd: rangeEnd(), PrevKv: r.Intn(2) == 0}
}

func compare() *pb.Compare {
	c := &pb.Compare{Key: key(), Result: pb.Compare_CompareResult(r.Intn(4)), Target: pb.Compare_CompareTarget(r.Intn(5))}
	if r.Intn(5) == 0 {
		c.RangeEnd = rangeEnd()
	}
	switch c.Target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: r.Int63n(5)}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: r.Int63n(cur + 2)}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: r.Int63n(cur + 2)}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: []byte(vals[r.Intn(len(vals))])}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: r.Int63n(2)}
	}
	return c
}

func ops(depth int) []*pb.RequestOp {
	n := r.Intn(4)
	out := []*pb.RequestOp{}
	for i := 0; i < n; i++ {
		switch k := r.Intn(10); {
		case k < 4:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: rangeReq()}})
		case k < 7:
			p := putReq()
			p.Lease = 0
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}})
		case k < 9:
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: delReq()}})
		default:
			if depth < 2 {
				out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: txnReq(depth + 1)}})
			}
		}
	}
	return out
}

func txnReq(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for i := r.Intn(4); i > 0; i-- {
		t.Compare = append(t.Compare, compare())
	}
	t.Success = ops(depth)
	t.Failure = ops(depth)
	return t
}

var mvccErrs = map[string]bool{
	"etcdserver: mvcc: required revision has been compacted": true,
	"etcdserver: mvcc: required revision is a future revision": true,
	"etcdserver: key not found":                                 true,
	"etcdserver: requested lease not found":                     true,
}

func main() {
	var seed int64
	var n int
	var endpoint string
	fmt.Sscan(os.Args[1], &seed)
	fmt.Sscan(os.Args[2], &n)
	endpoint = os.Args[3]
	r = rand.New(rand.NewSource(seed))
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	kv := pb.NewKVClient(cli.ActiveConnection())
	m := jsonpb.Marshaler{OrigName: true}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		var op string
		var req, resp proto.Message
		var err error
		switch k := r.Intn(100); {
		case k < 30:
			op = "put"
			q := putReq()
			req = q
			resp, err = kv.Put(ctx, q)
		case k < 40:
			op = "delete"
			q := delReq()
			req = q
			resp, err = kv.DeleteRange(ctx, q)
		case k < 68:
			op = "range"
			q := rangeReq()
			req = q
			resp, err = kv.Range(ctx, q)
		case k < 98:
			op = "txn"
			q := txnReq(0)
			req = q
			resp, err = kv.Txn(ctx, q)
		default:
			op = "compact"
			q := &pb.CompactionRequest{Revision: compactRev - 1 + r.Int63n(cur-compactRev+3), Physical: r.Intn(2) == 0}
			if r.Intn(6) == 0 {
				q.Revision = cur - r.Int63n(3)
			}
			req = q
			resp, err = kv.Compact(ctx, q)
			if err == nil {
				compactRev = q.Revision
			}
		}
		rs, _ := m.MarshalToString(req)
		var out string
		if err != nil {
			msg := status.Convert(err).Message()
			if mvccErrs[msg] {
				out = "ERR:" + msg
			} else {
				out = "APIERR:" + msg
			}
		} else {
			s, _ := m.MarshalToString(resp)
			out = "OK:" + s
			var h *pb.ResponseHeader
			switch v := resp.(type) {
			case *pb.PutResponse:
				h = v.Header
			case *pb.DeleteRangeResponse:
				h = v.Header
			case *pb.RangeResponse:
				h = v.Header
			case *pb.TxnResponse:
				h = v.Header
			case *pb.CompactionResponse:
				h = v.Header
			}
			cur = h.Revision
		}
		if strings.ContainsAny(rs+out, "\t\n") {
			panic("tab")
		}
		fmt.Printf("%s\t%s\t%s\n", op, rs, out)
	}
}

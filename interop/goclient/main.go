// etcd-testclient: a line-oriented JSON driver for the raw etcd v3 gRPC API.
//
// It talks to an etcd v3 endpoint through the generated etcdserverpb stubs
// (not clientv3), so every request reaches the server exactly as written:
// no retries, no key prefixing, no request rewriting.
//
// Usage: etcd-testclient --endpoint 127.0.0.1:2379 [--timeout 5s]
//
// stdin:  one JSON object per line: {"method":"KV.Range","request":{...}}
// stdout: one JSON object per request line:
//
//	{"response":<response marshalled with encoding/json>}
//	{"error":{"code":"<grpc code name>","message":"<status message>"}}
//
// See README.md for the complete contract.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/auth/authpb"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ---------------------------------------------------------------------------
// Input envelope and output lines

type envelope struct {
	Method    string            `json:"method"`
	Request   json.RawMessage   `json:"request"`
	TimeoutMS *int64            `json:"timeout_ms"`
	Token     string            `json:"token"`
	Metadata  map[string]string `json:"metadata"`
	// Accepted at top level as an alternative to inside "request" for the
	// one-shot streaming methods (Watch, LeaseKeepAlive).
	Requests json.RawMessage `json:"requests"`
	Expect   *int            `json:"expect"`
	SettleMS *int64          `json:"settle_ms"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type outLine struct {
	Response interface{} `json:"response,omitempty"`
	Error    *errorBody  `json:"error,omitempty"`
	// Only for streaming methods that failed after receiving some responses.
	Partial interface{} `json:"partial,omitempty"`
}

// streamResult is the "response" of the streaming methods.
type streamResult struct {
	Responses []interface{} `json:"responses"`
}

type emptyResult struct{}

// badInput marks an error in the input line (as opposed to an RPC error);
// it terminates the process with exit status 2.
type badInput struct{ msg string }

func (b badInput) Error() string { return b.msg }

func bad(format string, args ...interface{}) error {
	return badInput{fmt.Sprintf(format, args...)}
}

// rpcFailure is an RPC-level failure that still produced (possibly partial)
// stream responses.
type rpcFailure struct {
	code    codes.Code
	message string
	partial []interface{}
}

func (r *rpcFailure) Error() string { return r.code.String() + ": " + r.message }

func errorLine(err error) outLine {
	var rf *rpcFailure
	if errors.As(err, &rf) {
		line := outLine{Error: &errorBody{Code: rf.code.String(), Message: rf.message}}
		if len(rf.partial) > 0 {
			line.Partial = streamResult{Responses: rf.partial}
		}
		return line
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return outLine{Error: &errorBody{Code: codes.DeadlineExceeded.String(), Message: err.Error()}}
	}
	if errors.Is(err, context.Canceled) {
		return outLine{Error: &errorBody{Code: codes.Canceled.String(), Message: err.Error()}}
	}
	s, _ := status.FromError(err)
	return outLine{Error: &errorBody{Code: s.Code().String(), Message: s.Message()}}
}

// ---------------------------------------------------------------------------
// Request decoding
//
// Requests are decoded with encoding/json semantics (Go json tags of the
// gogo-generated structs, bytes as base64) plus what encoding/json cannot do:
//   * oneof fields (RequestOp.request, Compare.target_union,
//     WatchRequest.request_union) in the flat protobuf form
//     {"request_range":{...}} or in the nested form encoding/json produces
//     when marshalling, {"Request":{"RequestRange":{...}}};
//   * enum values given by name ("DESCEND") as well as by number;
//   * int64/uint64 values given as JSON strings ("5") as well as numbers.
// Field names match the json tag, the protobuf json name or the Go name,
// ignoring case and underscores. Unknown fields are an error.

var enumValues = map[reflect.Type]map[string]int32{
	reflect.TypeOf(pb.AlarmType(0)):                     pb.AlarmType_value,
	reflect.TypeOf(pb.RangeRequest_SortOrder(0)):        pb.RangeRequest_SortOrder_value,
	reflect.TypeOf(pb.RangeRequest_SortTarget(0)):       pb.RangeRequest_SortTarget_value,
	reflect.TypeOf(pb.Compare_CompareResult(0)):         pb.Compare_CompareResult_value,
	reflect.TypeOf(pb.Compare_CompareTarget(0)):         pb.Compare_CompareTarget_value,
	reflect.TypeOf(pb.WatchCreateRequest_FilterType(0)): pb.WatchCreateRequest_FilterType_value,
	reflect.TypeOf(pb.AlarmRequest_AlarmAction(0)):      pb.AlarmRequest_AlarmAction_value,
	reflect.TypeOf(mvccpb.Event_EventType(0)):           mvccpb.Event_EventType_value,
	reflect.TypeOf(authpb.Permission_Type(0)):           authpb.Permission_Type_value,
}

func normKey(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

type oneofMember struct {
	wrapper reflect.Type // pointer-to-struct wrapper type, e.g. *RequestOp_RequestRange
	name    string       // protobuf field name, e.g. request_range
}

type fieldTarget struct {
	index int    // struct field index
	name  string // json name of the field / oneof member
	oneof string // name of the oneof (oneof fields only)
	// oneofs: set when the field is a oneof interface field
	oneofMembers []oneofMember
	// member: >=0 when this key selects one member of a oneof (flat form)
	member int
}

type structInfo struct {
	keys  map[string]fieldTarget // normalized key -> target
	names []string               // accepted canonical names, for messages
}

var (
	structInfoMu    sync.Mutex
	structInfoCache = map[reflect.Type]*structInfo{}
)

func protobufTagValue(tag, key string) string {
	for _, part := range strings.Split(tag, ",") {
		if strings.HasPrefix(part, key+"=") {
			return strings.TrimPrefix(part, key+"=")
		}
	}
	return ""
}

func oneofWrappers(structPtr reflect.Type) []reflect.Type {
	zero := reflect.New(structPtr.Elem())
	var list []interface{}
	if m := zero.MethodByName("XXX_OneofWrappers"); m.IsValid() {
		list, _ = m.Call(nil)[0].Interface().([]interface{})
	} else if m := zero.MethodByName("XXX_OneofFuncs"); m.IsValid() {
		out := m.Call(nil)
		list, _ = out[len(out)-1].Interface().([]interface{})
	}
	var types []reflect.Type
	for _, w := range list {
		types = append(types, reflect.TypeOf(w))
	}
	return types
}

func getStructInfo(t reflect.Type) *structInfo {
	structInfoMu.Lock()
	defer structInfoMu.Unlock()
	if si, ok := structInfoCache[t]; ok {
		return si
	}
	si := &structInfo{keys: map[string]fieldTarget{}}
	ambiguous := map[string]bool{}
	add := func(key string, ft fieldTarget) {
		k := normKey(key)
		if k == "" || ambiguous[k] {
			return
		}
		if old, ok := si.keys[k]; ok {
			if old.index != ft.index || old.member != ft.member {
				delete(si.keys, k)
				ambiguous[k] = true
			}
			return
		}
		si.keys[k] = ft
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" || strings.HasPrefix(f.Name, "XXX_") {
			continue
		}
		jsonTag := f.Tag.Get("json")
		if jsonTag == "-" {
			continue
		}
		if oneofName := f.Tag.Get("protobuf_oneof"); oneofName != "" {
			ft := fieldTarget{index: i, name: oneofName, oneof: oneofName, member: -1}
			for _, w := range oneofWrappers(reflect.PtrTo(t)) {
				wf := w.Elem().Field(0)
				name := protobufTagValue(wf.Tag.Get("protobuf"), "name")
				if name == "" {
					name = wf.Name
				}
				ft.oneofMembers = append(ft.oneofMembers, oneofMember{wrapper: w, name: name})
			}
			// nested form: "request": {"request_range": {...}} / "Request": {"RequestRange": {...}}
			add(oneofName, ft)
			add(f.Name, ft)
			// flat form: "request_range": {...}
			for mi, m := range ft.oneofMembers {
				mt := fieldTarget{index: i, name: m.name, oneof: oneofName, oneofMembers: ft.oneofMembers, member: mi}
				add(m.name, mt)
				add(m.wrapper.Elem().Field(0).Name, mt)
				add(protobufTagValue(m.wrapper.Elem().Field(0).Tag.Get("protobuf"), "json"), mt)
				si.names = append(si.names, m.name)
			}
			continue
		}
		name := strings.Split(jsonTag, ",")[0]
		if name == "" {
			name = f.Name
		}
		ft := fieldTarget{index: i, name: name, member: -1}
		add(name, ft)
		add(f.Name, ft)
		add(protobufTagValue(f.Tag.Get("protobuf"), "json"), ft)
		si.names = append(si.names, name)
	}
	sort.Strings(si.names)
	structInfoCache[t] = si
	return si
}

func isNull(data json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(data), []byte("null"))
}

// decodeInto decodes JSON data into the settable value v.
func decodeInto(data json.RawMessage, v reflect.Value, path string) error {
	if isNull(data) {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	t := v.Type()
	if vals, ok := enumValues[t]; ok {
		var name string
		if err := json.Unmarshal(data, &name); err == nil {
			n, ok := vals[name]
			if !ok {
				if num, err := strconv.ParseInt(name, 10, 32); err == nil {
					n, ok = int32(num), true
				}
			}
			if !ok {
				var names []string
				for k := range vals {
					names = append(names, k)
				}
				sort.Strings(names)
				return fmt.Errorf("%s: unknown %s value %q (want one of %s or a number)", path, t.Name(), name, strings.Join(names, ", "))
			}
			v.SetInt(int64(n))
			return nil
		}
		var n int32
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		v.SetInt(int64(n))
		return nil
	}
	switch t.Kind() {
	case reflect.Ptr:
		elem := reflect.New(t.Elem())
		if err := decodeInto(data, elem.Elem(), path); err != nil {
			return err
		}
		v.Set(elem)
		return nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			break // []byte: base64 via encoding/json
		}
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return fmt.Errorf("%s: expected a JSON array: %v", path, err)
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			if err := decodeInto(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Struct:
		return decodeStruct(data, v, path)
	case reflect.Int64, reflect.Uint64, reflect.Int32, reflect.Uint32:
		var s string
		if err := json.Unmarshal(data, &s); err == nil {
			data = json.RawMessage(s) // "5" -> 5; validated below
		}
	case reflect.Interface:
		return fmt.Errorf("%s: cannot decode into interface type %s", path, t)
	}
	if err := json.Unmarshal(data, v.Addr().Interface()); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

func decodeStruct(data json.RawMessage, v reflect.Value, path string) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("%s: expected a JSON object for %s: %v", path, v.Type().Name(), err)
	}
	si := getStructInfo(v.Type())
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	oneofSetBy := map[int]string{}
	for _, k := range keys {
		raw := obj[k]
		ft, ok := si.keys[normKey(k)]
		if !ok {
			return fmt.Errorf("%s: unknown field %q in %s (known fields: %s)", path, k, v.Type().Name(), strings.Join(si.names, ", "))
		}
		fpath := path + "." + k
		field := v.Field(ft.index)
		if ft.oneofMembers == nil {
			if err := decodeInto(raw, field, fpath); err != nil {
				return err
			}
			continue
		}
		// oneof
		if isNull(raw) {
			continue
		}
		member := ft.member
		if member < 0 {
			// nested form: exactly one member key inside
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(raw, &inner); err != nil {
				return fmt.Errorf("%s: expected a JSON object naming one member of oneof %s: %v", fpath, ft.oneof, err)
			}
			if len(inner) != 1 {
				return fmt.Errorf("%s: oneof %s needs exactly one member, got %d", fpath, ft.oneof, len(inner))
			}
			for ik, iraw := range inner {
				sub, ok := si.keys[normKey(ik)]
				if !ok || sub.index != ft.index || sub.member < 0 {
					var names []string
					for _, m := range ft.oneofMembers {
						names = append(names, m.name)
					}
					return fmt.Errorf("%s: %q is not a member of oneof %s (members: %s)", fpath, ik, ft.oneof, strings.Join(names, ", "))
				}
				member = sub.member
				raw = iraw
				fpath = fpath + "." + ik
			}
		}
		if prev, ok := oneofSetBy[ft.index]; ok {
			return fmt.Errorf("%s: oneof %s set twice (%q and %q)", path, ft.oneof, prev, k)
		}
		oneofSetBy[ft.index] = k
		w := reflect.New(ft.oneofMembers[member].wrapper.Elem())
		if err := decodeInto(raw, w.Elem().Field(0), fpath); err != nil {
			return err
		}
		field.Set(w)
	}
	return nil
}

func decodeRequest(data json.RawMessage, out interface{}, path string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil // absent "request": zero-valued request
	}
	return decodeInto(data, reflect.ValueOf(out).Elem(), path)
}

// ---------------------------------------------------------------------------
// Method table

type callOpts struct {
	timeout  time.Duration
	metadata map[string]string
}

func (o callOpts) ctx(parent context.Context) context.Context {
	ctx := parent
	for k, v := range o.metadata {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	return ctx
}

type unaryMethod struct {
	service string
	newReq  func() interface{}
	invoke  func(ctx context.Context, req interface{}) (interface{}, error)
}

func unary[Req any, Resp any](service string, call func(context.Context, *Req, ...grpc.CallOption) (*Resp, error)) unaryMethod {
	return unaryMethod{
		service: service,
		newReq:  func() interface{} { return new(Req) },
		invoke: func(ctx context.Context, req interface{}) (interface{}, error) {
			resp, err := call(ctx, req.(*Req))
			if err != nil {
				return nil, err
			}
			return resp, nil
		},
	}
}

// bidiMethod opens a bidirectional stream. decode parses one request element.
type bidiMethod struct {
	service string
	decode  func(data json.RawMessage, path string) (interface{}, error)
	open    func(ctx context.Context) (*stream, error)
}

func bidi[Req any, Resp any, S interface {
	Send(*Req) error
	Recv() (*Resp, error)
	CloseSend() error
}](service string, openFn func(context.Context, ...grpc.CallOption) (S, error)) bidiMethod {
	return bidiMethod{
		service: service,
		decode: func(data json.RawMessage, path string) (interface{}, error) {
			req := new(Req)
			if err := decodeRequest(data, req, path); err != nil {
				return nil, err
			}
			return req, nil
		},
		open: func(ctx context.Context) (*stream, error) {
			s, err := openFn(ctx)
			if err != nil {
				return nil, err
			}
			st := newStream(
				func(req interface{}) error { return s.Send(req.(*Req)) },
				func() (interface{}, error) {
					r, err := s.Recv()
					if err != nil {
						return nil, err
					}
					return r, nil
				},
				s.CloseSend,
			)
			return st, nil
		},
	}
}

// ---------------------------------------------------------------------------
// Streams

type stream struct {
	send      func(interface{}) error
	closeSend func() error
	decode    func(json.RawMessage, string) (interface{}, error)
	cancel    context.CancelFunc

	mu     sync.Mutex
	queue  []interface{}
	err    error // terminal receive error (io.EOF when the server ended the stream)
	notify chan struct{}
}

func newStream(send func(interface{}) error, recv func() (interface{}, error), closeSend func() error) *stream {
	st := &stream{send: send, closeSend: closeSend, notify: make(chan struct{}, 1)}
	go func() {
		for {
			r, err := recv()
			st.mu.Lock()
			if err != nil {
				st.err = err
			} else {
				st.queue = append(st.queue, r)
			}
			st.mu.Unlock()
			select {
			case st.notify <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return st
}

func runWithTimeout(what string, d time.Duration, onTimeout func(), fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		onTimeout()
		return &rpcFailure{code: codes.DeadlineExceeded, message: fmt.Sprintf("timed out after %v %s", d, what)}
	}
}

func (st *stream) sendAll(reqs []interface{}, timeout time.Duration) error {
	return runWithTimeout("sending stream requests", timeout, st.cancel, func() error {
		for i, r := range reqs {
			if err := st.send(r); err != nil {
				if err == io.EOF {
					// The real error is reported by Recv.
					st.mu.Lock()
					rerr := st.err
					st.mu.Unlock()
					if rerr != nil && rerr != io.EOF {
						err = rerr
					} else {
						return &rpcFailure{code: codes.Unavailable, message: fmt.Sprintf("send of request %d failed: stream closed", i)}
					}
				}
				return err
			}
		}
		return nil
	})
}

// recv waits for n responses (at most timeout), then for settle more time
// collecting any further responses.
func (st *stream) recv(n int, settle, timeout time.Duration) ([]interface{}, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		st.mu.Lock()
		if len(st.queue) >= n {
			st.mu.Unlock()
			break
		}
		if st.err != nil {
			got := st.queue
			st.queue = nil
			err := st.err
			st.mu.Unlock()
			if err == io.EOF {
				return nil, &rpcFailure{code: codes.OK, message: fmt.Sprintf("stream ended by server after %d of %d expected responses", len(got), n), partial: got}
			}
			s, _ := status.FromError(err)
			return nil, &rpcFailure{code: s.Code(), message: s.Message(), partial: got}
		}
		st.mu.Unlock()
		select {
		case <-st.notify:
		case <-deadline.C:
			st.mu.Lock()
			got := st.queue
			st.queue = nil
			st.mu.Unlock()
			return nil, &rpcFailure{code: codes.DeadlineExceeded, message: fmt.Sprintf("timed out after %v waiting for stream responses: got %d of %d expected", timeout, len(got), n), partial: got}
		}
	}
	if settle > 0 {
		time.Sleep(settle)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	take := n
	if settle > 0 {
		take = len(st.queue)
	}
	got := append([]interface{}{}, st.queue[:take]...)
	st.queue = st.queue[take:]
	return got, nil
}

func (st *stream) close() {
	_ = st.closeSend()
	st.cancel()
}

// ---------------------------------------------------------------------------
// Client

type client struct {
	conn    *grpc.ClientConn
	timeout time.Duration
	unary   map[string]unaryMethod // key: "Service.Method"
	bidi    map[string]bidiMethod
	streams map[string]*stream
}

func newClient(conn *grpc.ClientConn, timeout time.Duration) *client {
	kv := pb.NewKVClient(conn)
	lease := pb.NewLeaseClient(conn)
	cluster := pb.NewClusterClient(conn)
	maint := pb.NewMaintenanceClient(conn)
	auth := pb.NewAuthClient(conn)
	watch := pb.NewWatchClient(conn)
	c := &client{conn: conn, timeout: timeout, unary: map[string]unaryMethod{}, bidi: map[string]bidiMethod{}, streams: map[string]*stream{}}
	u := map[string]unaryMethod{
		"Range":       unary("KV", kv.Range),
		"Put":         unary("KV", kv.Put),
		"DeleteRange": unary("KV", kv.DeleteRange),
		"Txn":         unary("KV", kv.Txn),
		"Compact":     unary("KV", kv.Compact),

		"LeaseGrant":      unary("Lease", lease.LeaseGrant),
		"LeaseRevoke":     unary("Lease", lease.LeaseRevoke),
		"LeaseTimeToLive": unary("Lease", lease.LeaseTimeToLive),
		"LeaseLeases":     unary("Lease", lease.LeaseLeases),

		"MemberAdd":     unary("Cluster", cluster.MemberAdd),
		"MemberRemove":  unary("Cluster", cluster.MemberRemove),
		"MemberUpdate":  unary("Cluster", cluster.MemberUpdate),
		"MemberList":    unary("Cluster", cluster.MemberList),
		"MemberPromote": unary("Cluster", cluster.MemberPromote),

		"Alarm":      unary("Maintenance", maint.Alarm),
		"Status":     unary("Maintenance", maint.Status),
		"Defragment": unary("Maintenance", maint.Defragment),
		"Hash":       unary("Maintenance", maint.Hash),
		"HashKV":     unary("Maintenance", maint.HashKV),
		"MoveLeader": unary("Maintenance", maint.MoveLeader),

		"AuthEnable":           unary("Auth", auth.AuthEnable),
		"AuthDisable":          unary("Auth", auth.AuthDisable),
		"Authenticate":         unary("Auth", auth.Authenticate),
		"UserAdd":              unary("Auth", auth.UserAdd),
		"UserGet":              unary("Auth", auth.UserGet),
		"UserList":             unary("Auth", auth.UserList),
		"UserDelete":           unary("Auth", auth.UserDelete),
		"UserChangePassword":   unary("Auth", auth.UserChangePassword),
		"UserGrantRole":        unary("Auth", auth.UserGrantRole),
		"UserRevokeRole":       unary("Auth", auth.UserRevokeRole),
		"RoleAdd":              unary("Auth", auth.RoleAdd),
		"RoleGet":              unary("Auth", auth.RoleGet),
		"RoleList":             unary("Auth", auth.RoleList),
		"RoleDelete":           unary("Auth", auth.RoleDelete),
		"RoleGrantPermission":  unary("Auth", auth.RoleGrantPermission),
		"RoleRevokePermission": unary("Auth", auth.RoleRevokePermission),
	}
	for name, m := range u {
		c.unary[m.service+"."+name] = m
	}
	c.bidi["Watch.Watch"] = bidi[pb.WatchRequest, pb.WatchResponse]("Watch", watch.Watch)
	c.bidi["Lease.LeaseKeepAlive"] = bidi[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]("Lease", lease.LeaseKeepAlive)
	return c
}

var localMethods = map[string]bool{"StreamOpen": true, "StreamSend": true, "StreamRecv": true, "StreamClose": true}

// resolve maps "Range", "KV.Range", "KV/Range", "etcdserverpb.KV/Range",
// "/etcdserverpb.KV/Range" to "KV.Range".
func (c *client) resolve(method string) (string, error) {
	m := strings.TrimPrefix(method, "/")
	m = strings.TrimPrefix(m, "etcdserverpb.")
	m = strings.Replace(m, "/", ".", 1)
	if localMethods[m] {
		return m, nil
	}
	if strings.Contains(m, ".") {
		if _, ok := c.unary[m]; ok {
			return m, nil
		}
		if _, ok := c.bidi[m]; ok {
			return m, nil
		}
		return "", bad("unknown method %q", method)
	}
	var found []string
	for k := range c.unary {
		if strings.HasSuffix(k, "."+m) {
			found = append(found, k)
		}
	}
	for k := range c.bidi {
		if strings.HasSuffix(k, "."+m) {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		var all []string
		for k := range c.unary {
			all = append(all, k)
		}
		for k := range c.bidi {
			all = append(all, k)
		}
		for k := range localMethods {
			all = append(all, k)
		}
		sort.Strings(all)
		return "", bad("unknown method %q (known: %s)", method, strings.Join(all, ", "))
	}
	return found[0], nil
}

// handle processes one input line; it returns the line to print, or a
// badInput error.
func (c *client) handle(line []byte) (outLine, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return outLine{}, bad("invalid request line: %v", err)
	}
	if dec.More() {
		return outLine{}, bad("invalid request line: trailing data after the JSON object")
	}
	if env.Method == "" {
		return outLine{}, bad("missing \"method\"")
	}
	name, err := c.resolve(env.Method)
	if err != nil {
		return outLine{}, err
	}
	opts := callOpts{timeout: c.timeout, metadata: map[string]string{}}
	if env.TimeoutMS != nil {
		if *env.TimeoutMS <= 0 {
			return outLine{}, bad("timeout_ms must be > 0")
		}
		opts.timeout = time.Duration(*env.TimeoutMS) * time.Millisecond
	}
	for k, v := range env.Metadata {
		opts.metadata[strings.ToLower(k)] = v
	}
	if env.Token != "" {
		opts.metadata["token"] = env.Token
	}
	_, isBidi := c.bidi[name]
	if !isBidi && (env.Requests != nil || env.Expect != nil || env.SettleMS != nil) {
		return outLine{}, bad("top-level \"requests\"/\"expect\"/\"settle_ms\" are only valid for Watch and LeaseKeepAlive")
	}

	var resp interface{}
	switch {
	case localMethods[name]:
		resp, err = c.local(name, env.Request, opts)
	case isBidi:
		resp, err = c.oneShotStream(name, env, opts)
	default:
		m := c.unary[name]
		req := m.newReq()
		if err := decodeRequest(env.Request, req, "request"); err != nil {
			return outLine{}, bad("%v", err)
		}
		ctx, cancel := context.WithTimeout(opts.ctx(context.Background()), opts.timeout)
		resp, err = m.invoke(ctx, req)
		cancel()
	}
	if err != nil {
		var bi badInput
		if errors.As(err, &bi) {
			return outLine{}, err
		}
		return errorLine(err), nil
	}
	return outLine{Response: resp}, nil
}

type streamArgs struct {
	Requests []json.RawMessage `json:"requests"`
	Expect   *int              `json:"expect"`
	SettleMS int64             `json:"settle_ms"`
	// session streams only
	Stream string `json:"stream"`
	RPC    string `json:"rpc"`
}

func parseStreamArgs(data json.RawMessage) (streamArgs, error) {
	var a streamArgs
	if len(bytes.TrimSpace(data)) == 0 || isNull(data) {
		return a, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, bad("request: %v", err)
	}
	if a.Expect != nil && *a.Expect < 0 {
		return a, bad("request.expect must be >= 0")
	}
	if a.SettleMS < 0 {
		return a, bad("request.settle_ms must be >= 0")
	}
	return a, nil
}

func (c *client) decodeAll(m bidiMethod, raws []json.RawMessage) ([]interface{}, error) {
	var reqs []interface{}
	for i, raw := range raws {
		r, err := m.decode(raw, fmt.Sprintf("requests[%d]", i))
		if err != nil {
			return nil, bad("%v", err)
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func (c *client) openStream(m bidiMethod, opts callOpts) (*stream, error) {
	ctx, cancel := context.WithCancel(opts.ctx(context.Background()))
	var st *stream
	err := runWithTimeout("opening stream", opts.timeout, cancel, func() error {
		var err error
		st, err = m.open(ctx)
		return err
	})
	if err != nil {
		cancel()
		return nil, err
	}
	st.cancel = cancel
	return st, nil
}

func (c *client) oneShotStream(name string, env envelope, opts callOpts) (interface{}, error) {
	m := c.bidi[name]
	var a streamArgs
	if env.Requests != nil || env.Expect != nil || env.SettleMS != nil {
		if env.Request != nil {
			return nil, bad("give \"requests\"/\"expect\" either at top level or inside \"request\", not both")
		}
		if env.Requests != nil {
			if err := json.Unmarshal(env.Requests, &a.Requests); err != nil {
				return nil, bad("requests: %v", err)
			}
		}
		a.Expect = env.Expect
		if env.SettleMS != nil {
			a.SettleMS = *env.SettleMS
		}
	} else {
		var err error
		if a, err = parseStreamArgs(env.Request); err != nil {
			return nil, err
		}
	}
	if a.Stream != "" || a.RPC != "" {
		return nil, bad("\"stream\"/\"rpc\" are only valid for StreamOpen/StreamSend/StreamRecv/StreamClose")
	}
	reqs, err := c.decodeAll(m, a.Requests)
	if err != nil {
		return nil, err
	}
	expect := len(reqs)
	if a.Expect != nil {
		expect = *a.Expect
	}
	st, err := c.openStream(m, opts)
	if err != nil {
		return nil, err
	}
	defer st.close()
	if err := st.sendAll(reqs, opts.timeout); err != nil {
		return nil, err
	}
	got, err := st.recv(expect, time.Duration(a.SettleMS)*time.Millisecond, opts.timeout)
	if err != nil {
		return nil, err
	}
	return streamResult{Responses: got}, nil
}

func (c *client) local(name string, data json.RawMessage, opts callOpts) (interface{}, error) {
	a, err := parseStreamArgs(data)
	if err != nil {
		return nil, err
	}
	if a.Stream == "" {
		return nil, bad("%s: request.stream (a name for the stream) is required", name)
	}
	st := c.streams[a.Stream]
	if name == "StreamOpen" {
		if st != nil {
			return nil, bad("StreamOpen: stream %q is already open", a.Stream)
		}
		if a.Expect != nil || a.SettleMS != 0 || a.Requests != nil {
			return nil, bad("StreamOpen takes only \"stream\" and \"rpc\"")
		}
		rpc, err := c.resolve(a.RPC)
		if err != nil {
			return nil, err
		}
		m, ok := c.bidi[rpc]
		if !ok {
			return nil, bad("StreamOpen: rpc must be Watch or LeaseKeepAlive, got %q", a.RPC)
		}
		st, err := c.openStream(m, opts)
		if err != nil {
			return nil, err
		}
		st.decode = m.decode
		c.streams[a.Stream] = st
		return emptyResult{}, nil
	}
	if st == nil {
		return nil, bad("%s: stream %q is not open", name, a.Stream)
	}
	if a.RPC != "" {
		return nil, bad("%s: \"rpc\" is only valid for StreamOpen", name)
	}
	switch name {
	case "StreamSend":
		if a.Expect != nil || a.SettleMS != 0 {
			return nil, bad("StreamSend takes only \"stream\" and \"requests\"; use StreamRecv to receive")
		}
		var reqs []interface{}
		for i, raw := range a.Requests {
			r, err := st.decode(raw, fmt.Sprintf("requests[%d]", i))
			if err != nil {
				return nil, bad("%v", err)
			}
			reqs = append(reqs, r)
		}
		if err := st.sendAll(reqs, opts.timeout); err != nil {
			return nil, err
		}
		return emptyResult{}, nil
	case "StreamRecv":
		if a.Requests != nil {
			return nil, bad("StreamRecv takes only \"stream\", \"expect\" and \"settle_ms\"")
		}
		n := 1
		if a.Expect != nil {
			n = *a.Expect
		}
		got, err := st.recv(n, time.Duration(a.SettleMS)*time.Millisecond, opts.timeout)
		if err != nil {
			return nil, err
		}
		return streamResult{Responses: got}, nil
	case "StreamClose":
		if a.Requests != nil || a.Expect != nil || a.SettleMS != 0 {
			return nil, bad("StreamClose takes only \"stream\"")
		}
		st.close()
		delete(c.streams, a.Stream)
		return emptyResult{}, nil
	}
	return nil, bad("unknown method %q", name)
}

func (c *client) closeAll() {
	for _, st := range c.streams {
		st.close()
	}
}

// ---------------------------------------------------------------------------

func writeLine(w *bufio.Writer, v interface{}) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	return w.Flush()
}

func main() {
	endpoint := flag.String("endpoint", "", "etcd client endpoint, host:port (required)")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout")
	flag.Parse()
	if *endpoint == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: etcd-testclient --endpoint HOST:PORT [--timeout 5s] < requests.jsonl")
		os.Exit(2)
	}
	target := strings.TrimPrefix(strings.TrimPrefix(*endpoint, "http://"), "https://")

	conn, err := grpc.Dial(target,
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(math.MaxInt32),
			grpc.MaxCallSendMsgSize(math.MaxInt32),
		),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-testclient: dial %s: %v\n", target, err)
		os.Exit(1)
	}
	c := newClient(conn, *timeout)

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	exit := func(code int) {
		c.closeAll()
		conn.Close()
		os.Exit(code)
	}
	for lineNo := 1; ; lineNo++ {
		line, rerr := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			res, err := c.handle(line)
			if err != nil {
				fmt.Fprintf(os.Stderr, "etcd-testclient: input line %d: %v\n", lineNo, err)
				exit(2)
			}
			if err := writeLine(out, res); err != nil {
				fmt.Fprintf(os.Stderr, "etcd-testclient: writing output: %v\n", err)
				exit(1)
			}
		}
		if rerr == io.EOF {
			exit(0)
		}
		if rerr != nil {
			fmt.Fprintf(os.Stderr, "etcd-testclient: reading stdin: %v\n", rerr)
			exit(1)
		}
	}
}

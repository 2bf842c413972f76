package storage_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
)

// The storage side of the hot paths, against the test cluster:
//
//	go test -run '^$' -bench . ./storage/
//
// Each reports statements per operation next to its time.

func newUnitEnvB(b *testing.B) *unitEnv { return newUnitEnv(b) }

func (e *unitEnv) startCacheB(b *testing.B) { e.startCache(e.store) }

// report runs op once per iteration, numbered from 0, and reports the
// statements each ran.
func (e *unitEnv) report(b *testing.B, op func(i int)) {
	before := storage.Statements(e.pool)
	i := 0
	for b.Loop() {
		op(i)
		i++
	}
	b.ReportMetric(float64(storage.Statements(e.pool)-before)/float64(max(i, 1)), "statements/op")
}

func withReads(e *unitEnv) context.Context { return storage.WithReads(e.ctx) }

// BenchmarkIntrospectionLookup: the one query introspection makes, and
// fosite's two lookups answered from it.
func BenchmarkIntrospectionLookup(b *testing.B) {
	e := newUnitEnvB(b)
	req := e.request("grant-1")
	e.must(e.store.CreateAccessTokenSession(e.ctx, "access-1", req))
	e.report(b, func(int) {
		ctx := withReads(e)
		e.must(e.store.PrefetchToken(ctx, "access-1", "access-1"))
		_, err := e.store.GetAccessTokenSession(ctx, "access-1", openid.NewDefaultSession())
		e.must(err)
	})
}

// BenchmarkLookupForIntrospection: introspection's one statement as the
// server sends it, with the client cache on: without a hint (both tables)
// and with token_type_hint=access_token (the access table alone).
func BenchmarkLookupForIntrospection(b *testing.B) {
	e := newUnitEnvB(b)
	e.startCacheB(b)
	e.must(e.store.CreateAccessTokenSession(e.ctx, "access-1", e.request("grant-1")))
	for _, accessOnly := range []bool{false, true} {
		b.Run("access_only="+strconv.FormatBool(accessOnly), func(b *testing.B) {
			e.report(b, func(int) {
				v, err := e.store.LookupForIntrospection(withReads(e), "access-1", "access-1", accessOnly)
				e.must(err)
				if v == nil {
					b.Fatal("no view")
				}
			})
		})
	}
}

// BenchmarkLookupForIntrospectionParallel: introspection lookups from 32
// goroutines at once, as a loaded server makes them: they share
// statements (statements/op below one).
func BenchmarkLookupForIntrospectionParallel(b *testing.B) {
	e := newUnitEnvB(b)
	e.startCacheB(b)
	e.must(e.store.CreateAccessTokenSession(e.ctx, "access-1", e.request("grant-1")))
	before := storage.Statements(e.pool)
	b.SetParallelism(32 / max(runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v, err := e.store.LookupForIntrospection(withReads(e), "access-1", "access-1", true)
			if err != nil || v == nil {
				b.Errorf("lookup: %v, %v", v, err)
				return
			}
		}
	})
	b.ReportMetric(float64(storage.Statements(e.pool)-before)/float64(max(b.N, 1)), "statements/op")
}

// BenchmarkCreateAccessTokenParallel: client_credentials' one write, from
// 32 goroutines at once, each due within the request deadline a server
// would give it: concurrent inserts share a statement and a commit.
func BenchmarkCreateAccessTokenParallel(b *testing.B) {
	e := newUnitEnvB(b)
	req := e.request("grant")
	var n atomic.Int64
	before := storage.Statements(e.pool)
	b.SetParallelism(32 / max(runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			err := e.store.CreateAccessTokenSession(ctx, "cc-"+strconv.FormatInt(n.Add(1), 10), req)
			cancel()
			if err != nil {
				b.Errorf("insert: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(storage.Statements(e.pool)-before)/float64(max(b.N, 1)), "statements/op")
}

// BenchmarkExchangeUnit: a code exchange's storage work, as in
// TestExchangeIsFourStatements.
func BenchmarkExchangeUnit(b *testing.B) {
	e := newUnitEnvB(b)
	req := e.request("grant")
	var statements int64
	i := 0
	for b.Loop() {
		sig := "code-" + strconv.Itoa(i)
		i++
		b.StopTimer()
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, sig, req))
		before := storage.Statements(e.pool)
		b.StartTimer()
		ctx, err := e.store.BeginTX(e.ctx)
		e.must(err)
		e.must(e.store.PrefetchCode(ctx, sig, "raw-"+sig))
		r, err := e.store.GetAuthorizeCodeSession(ctx, sig, openid.NewDefaultSession())
		if err != nil {
			_ = e.store.Rollback(ctx)
			b.Fatal(err)
		}
		e.must(e.store.InvalidateAuthorizeCodeSession(ctx, sig))
		e.must(e.store.CreateAccessTokenSession(ctx, "a-"+sig, r))
		e.must(e.store.CreateRefreshTokenSession(ctx, "r-"+sig, "a-"+sig, r))
		e.must(e.store.Commit(ctx))
		statements += storage.Statements(e.pool) - before
	}
	b.ReportMetric(float64(statements)/float64(max(i, 1)), "statements/op")
}

// BenchmarkRefreshUnit: rotating one long family, as in
// TestRefreshIsFourStatements: the cost must not grow with the family.
func BenchmarkRefreshUnit(b *testing.B) {
	e := newUnitEnvB(b)
	req := e.request("grant-1")
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "r-0", "a-0", req))
	e.report(b, func(i int) {
		old, next := "r-"+strconv.Itoa(i), "r-"+strconv.Itoa(i+1)
		ctx, err := e.store.BeginTX(storage.WithRefreshReuse(e.ctx, time.Now(), 2*time.Second))
		e.must(err)
		r, err := e.store.GetRefreshTokenSession(ctx, old, openid.NewDefaultSession())
		if err != nil {
			_ = e.store.Rollback(ctx)
			b.Fatal(err)
		}
		e.must(e.store.RotateRefreshToken(ctx, r.GetID(), old))
		e.must(e.store.CreateAccessTokenSession(ctx, "a-"+next, r))
		e.must(e.store.CreateRefreshTokenSession(ctx, next, "a-"+next, r))
		e.must(e.store.Commit(ctx))
	})
}

// BenchmarkGetClient: a client lookup with the cache on (no round trip)
// and off.
func BenchmarkGetClient(b *testing.B) {
	for _, cached := range []bool{false, true} {
		b.Run("cached="+strconv.FormatBool(cached), func(b *testing.B) {
			e := newUnitEnvB(b)
			if cached {
				e.startCacheB(b)
			}
			e.report(b, func(int) {
				_, err := e.store.GetClient(e.ctx, e.client.ID)
				e.must(err)
			})
		})
	}
}

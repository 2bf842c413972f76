package storage_test

import (
	"bytes"
	"sync"
	"testing"
)

// TestPairwiseSalt: the first call creates the installation's salt and
// every later or concurrent one, as replicas starting together would,
// reads back the same; two databases get different salts.
func TestPairwiseSalt(t *testing.T) {
	t.Parallel()
	s := throttleStore(t, newFakeClock(), 8)
	const n = 8
	salts := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			salts[i], errs[i] = s.PairwiseSalt(t.Context())
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("PairwiseSalt: %v", errs[i])
		}
		if len(salts[i]) < 32 || !bytes.Equal(salts[i], salts[0]) {
			t.Fatalf("salt %d = %x, salt 0 = %x: want one salt of at least 32 bytes", i, salts[i], salts[0])
		}
	}
	again, err := s.PairwiseSalt(t.Context())
	if err != nil || !bytes.Equal(again, salts[0]) {
		t.Fatalf("a later call: %x, %v; want %x", again, err, salts[0])
	}
	other, err := throttleStore(t, newFakeClock(), 2).PairwiseSalt(t.Context())
	if err != nil || bytes.Equal(other, salts[0]) {
		t.Fatalf("another database's salt: %x, %v; want a different one", other, err)
	}
}

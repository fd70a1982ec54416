package bindings_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nopal-dev/nopal/bindings"
)

func TestStoreLifecycle(t *testing.T) {
	store := newStore(t)
	ctx := testCtx(t)
	fe1 := bindings.Binding{FrontendID: "fe-1", SessionID: 1}
	fe2 := bindings.Binding{FrontendID: "fe-2", SessionID: 7}
	fe1b := bindings.Binding{FrontendID: "fe-1", SessionID: 2}

	// Each step runs in order on one uid; want is the binding held after
	// the step (nil: unbound).
	steps := []struct {
		name     string
		bind     *bindings.Binding // Bind this, or
		unbind   *bindings.Binding // Unbind this
		wantPrev *bindings.Binding // what Bind returns
		want     *bindings.Binding
	}{
		{name: "first bind", bind: &fe1, wantPrev: nil, want: &fe1},
		{name: "takeover by another frontend", bind: &fe2, wantPrev: &fe1, want: &fe2},
		{name: "stale unbind removes nothing", unbind: &fe1, want: &fe2},
		{name: "same frontend, other session is stale too", unbind: &bindings.Binding{FrontendID: "fe-2", SessionID: 8}, want: &fe2},
		{name: "bind again with the same binding", bind: &fe2, wantPrev: &fe2, want: &fe2},
		{name: "takeover back", bind: &fe1b, wantPrev: &fe2, want: &fe1b},
		{name: "current unbind removes it", unbind: &fe1b, want: nil},
		{name: "unbind of an unbound uid", unbind: &fe1b, want: nil},
		{name: "bind after unbind is a first bind", bind: &fe1, wantPrev: nil, want: &fe1},
		{name: "unbind it", unbind: &fe1, want: nil},
	}
	const uid = "alice"
	for _, st := range steps {
		switch {
		case st.bind != nil:
			prev, err := store.Bind(ctx, uid, *st.bind)
			if err != nil {
				t.Fatalf("%s: Bind: %v", st.name, err)
			}
			if !samePtr(prev, st.wantPrev) {
				t.Fatalf("%s: Bind returned prev %v, want %v", st.name, prev, st.wantPrev)
			}
		case st.unbind != nil:
			if err := store.Unbind(ctx, uid, *st.unbind); err != nil {
				t.Fatalf("%s: Unbind: %v", st.name, err)
			}
		}
		got, err := store.Get(ctx, uid)
		switch {
		case st.want == nil:
			if !errors.Is(err, bindings.ErrNotFound) {
				t.Fatalf("%s: Get = %v, %v; want ErrNotFound", st.name, got, err)
			}
			if _, err := store.FrontendOf(ctx, uid); !errors.Is(err, bindings.ErrNotFound) {
				t.Fatalf("%s: FrontendOf err = %v, want ErrNotFound", st.name, err)
			}
		case err != nil:
			t.Fatalf("%s: Get: %v", st.name, err)
		case got != *st.want:
			t.Fatalf("%s: Get = %v, want %v", st.name, got, *st.want)
		default:
			fe, err := store.FrontendOf(ctx, uid)
			if err != nil || fe != st.want.FrontendID {
				t.Fatalf("%s: FrontendOf = %q, %v; want %q", st.name, fe, err, st.want.FrontendID)
			}
		}
	}
}

func samePtr(a, b *bindings.Binding) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestStoreNotFoundAndInvalid(t *testing.T) {
	store := newStore(t)
	ctx := testCtx(t)
	if _, err := store.Get(ctx, "nobody"); !errors.Is(err, bindings.ErrNotFound) {
		t.Fatalf("Get of an unbound uid: %v, want ErrNotFound", err)
	}
	if _, err := store.FrontendOf(ctx, "nobody"); !errors.Is(err, bindings.ErrNotFound) {
		t.Fatalf("FrontendOf of an unbound uid: %v, want ErrNotFound", err)
	}
	b := bindings.Binding{FrontendID: "fe-1", SessionID: 1}
	for _, uid := range []string{"", strings.Repeat("x", bindings.MaxUIDLen+1)} {
		calls := map[string]func() error{
			"Bind":       func() error { _, err := store.Bind(ctx, uid, b); return err },
			"Unbind":     func() error { return store.Unbind(ctx, uid, b) },
			"Get":        func() error { _, err := store.Get(ctx, uid); return err },
			"FrontendOf": func() error { _, err := store.FrontendOf(ctx, uid); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, bindings.ErrInvalidUID) {
				t.Errorf("%s with a uid of %d bytes: %v, want ErrInvalidUID", name, len(uid), err)
			}
		}
	}
	// The longest uids, safe or encoded (a third longer), still work.
	for _, uid := range []string{strings.Repeat("x", bindings.MaxUIDLen), strings.Repeat("\xff", bindings.MaxUIDLen)} {
		if _, err := store.Bind(ctx, uid, b); err != nil {
			t.Fatalf("Bind of a uid of %d bytes: %v", len(uid), err)
		}
		if got, err := store.Get(ctx, uid); err != nil || got != b {
			t.Fatalf("Get of a uid of %d bytes: %v, %v", len(uid), got, err)
		}
	}
}

// TestStoreUIDEncoding binds uids that are not valid KV keys next to valid
// ones that look like their encoded forms. Every Bind must be a first bind
// (a shared key would return a prev) and every uid must read back its own
// binding.
func TestStoreUIDEncoding(t *testing.T) {
	store := newStore(t)
	ctx := testCtx(t)
	enc := func(s string) string { return "b64." + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	uids := []string{
		"alice",
		"user 42", enc("user 42"),
		"josé", enc("josé"),
		"日本語 ユーザー",
		"a.b", "a..b", ".lead", "trail.", ".",
		"a/b", "/", "a/b/c=d",
		"*", ">", "a.*", "a.>",
		"tab\tand\nnewline",
		"a", enc("a"), enc(enc("a")),
		"b64.", "b64", "B64.YQ",
		"emoji 🎮",
	}
	want := make(map[string]bindings.Binding, len(uids))
	for i, uid := range uids {
		b := bindings.Binding{FrontendID: fmt.Sprintf("fe-%d", i), SessionID: int64(i)}
		want[uid] = b
		prev, err := store.Bind(ctx, uid, b)
		if err != nil {
			t.Fatalf("Bind(%q): %v", uid, err)
		}
		if prev != nil {
			t.Fatalf("Bind(%q) replaced %v: two uids share a key", uid, *prev)
		}
	}
	for _, uid := range uids {
		got, err := store.Get(ctx, uid)
		if err != nil || got != want[uid] {
			t.Fatalf("Get(%q) = %v, %v; want %v", uid, got, err, want[uid])
		}
	}
	for _, uid := range uids {
		if err := store.Unbind(ctx, uid, want[uid]); err != nil {
			t.Fatalf("Unbind(%q): %v", uid, err)
		}
		if _, err := store.Get(ctx, uid); !errors.Is(err, bindings.ErrNotFound) {
			t.Fatalf("Get(%q) after Unbind: %v, want ErrNotFound", uid, err)
		}
	}
}

// TestStoreConcurrentBind binds one uid from 50 goroutines at once. Every
// Bind succeeds, and the binds form one chain: exactly one found the uid
// unbound, every binding but the final one was returned as a prev exactly
// once (so every loser would be kicked), and the final one never was.
func TestStoreConcurrentBind(t *testing.T) {
	store := newStore(t)
	ctx := testCtx(t)
	const n = 50
	const uid = "contended"

	prevs := make([]*bindings.Binding, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			prevs[i], errs[i] = store.Bind(ctx, uid, bindings.Binding{FrontendID: fmt.Sprintf("fe-%d", i%3), SessionID: int64(i)})
		})
	}
	close(start)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("Bind %d: %v", i, err)
		}
	}
	final, err := store.Get(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	firsts := 0
	replaced := make(map[int64]int) // session id -> times returned as prev
	for i, p := range prevs {
		if p == nil {
			firsts++
			continue
		}
		if want := fmt.Sprintf("fe-%d", p.SessionID%3); p.FrontendID != want || p.SessionID < 0 || p.SessionID >= n {
			t.Fatalf("Bind %d returned prev %v, which nobody bound", i, *p)
		}
		replaced[p.SessionID]++
	}
	if firsts != 1 {
		t.Fatalf("%d binds found the uid unbound, want 1", firsts)
	}
	for i := range int64(n) {
		switch got := replaced[i]; {
		case i == final.SessionID && got != 0:
			t.Fatalf("final binding %v was returned as a prev %d times", final, got)
		case i != final.SessionID && got != 1:
			t.Fatalf("binding of session %d was returned as a prev %d times, want 1", i, got)
		}
	}
}

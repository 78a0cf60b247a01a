package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// redirectHandler serves /r/N: N > 0 redirects to /r/N-1, /r/0 answers 200.
func redirectHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if n > 0 {
		http.Redirect(w, r, fmt.Sprintf("/r/%d", n-1), http.StatusFound)
		return
	}
	fmt.Fprintln(w, "ok")
}

func TestHTTP503Then200(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	var mu sync.Mutex
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.Header.Get("User-Agent"))
		mu.Unlock()
		if requests.Add(1) <= 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(srv.Close)

	target := srv.URL + "/healthz"
	r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "10s", target)
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	if n := requests.Load(); n != 4 {
		t.Errorf("%d requests, want 4 (3 x 503, then 200, then stop)", n)
	}
	mu.Lock()
	for _, ua := range agents {
		if ua != "depends-on-wait-for-service/dev" {
			t.Errorf("User-Agent = %q", ua)
		}
	}
	mu.Unlock()
	for _, w := range []string{
		target + " not ready: HTTP 503 Service Unavailable",
		target + " ready after ",
		"all 1 target ready after ",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("log does not contain %q", w)
		}
	}
	if n := strings.Count(r.stderr, "not ready"); n != 1 {
		t.Errorf("%d 'not ready' lines, want 1 (the error never changed)", n)
	}
}

func TestHTTPFollowsUpToFiveRedirects(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(redirectHandler))
	t.Cleanup(srv.Close)
	r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "5s", srv.URL+"/r/5", srv.URL+"/r/1")
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	if strings.Contains(r.stderr, "not ready") {
		t.Errorf("a redirect chain of 5 was not followed at once")
	}
}

func TestFetchWritesBodyAtomically(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := make([]byte, 300<<10)
	rand.Read(big)
	small := []byte("new content\n")
	flaky := bytes.Repeat([]byte("0123456789"), 100)

	var bigRequests, flakyRequests atomic.Int32
	halfSent := make(chan struct{})
	proceed := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// 503 twice, then the body in two halves (chunked, no length), with
		// a pause in between during which the test looks at the directory.
		if bigRequests.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.Write(big[:len(big)/2])
		w.(http.Flusher).Flush()
		close(halfSent)
		<-proceed
		w.Write(big[len(big)/2:])
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(small)))
		w.Write(small)
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		// First answer: a body cut in the middle (a network error).
		w.Header().Set("Content-Length", strconv.Itoa(len(flaky)))
		if flakyRequests.Add(1) == 1 {
			w.Write(flaky[:len(flaky)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Write(flaky)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	bigDest := filepath.Join(dir, "new", "sub", "big.bin")
	smallDest := filepath.Join(dir, "existing.txt")
	flakyDest := filepath.Join(dir, "flaky.txt")
	if err := os.WriteFile(smallDest, []byte("old content, longer than the new one\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var inFlight []string
	var destExistedEarly bool
	go func() {
		<-halfSent
		// Half the body has been sent: it may be in a temporary file, but
		// the destination must not exist yet.
		time.Sleep(50 * time.Millisecond)
		entries, _ := os.ReadDir(filepath.Dir(bigDest))
		for _, e := range entries {
			inFlight = append(inFlight, e.Name())
		}
		_, err := os.Stat(bigDest)
		destExistedEarly = err == nil
		close(proceed)
	}()

	r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "10s",
		"fetch:"+bigDest+"="+srv.URL+"/big",
		"fetch:"+smallDest+"="+srv.URL+"/small",
		"fetch:"+flakyDest+"="+srv.URL+"/flaky")
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	if destExistedEarly {
		t.Errorf("%s existed while its body was still being received", bigDest)
	}
	if len(inFlight) != 1 || !strings.HasPrefix(inFlight[0], ".big.bin.tmp-") {
		t.Errorf("while receiving, directory held %v, want one temporary file", inFlight)
	}
	for dest, want := range map[string][]byte{bigDest: big, smallDest: small, flakyDest: flaky} {
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes, want the exact %d bytes served", dest, len(got), len(want))
		}
		if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v (%v), want 0644", dest, fi.Mode().Perm(), err)
		}
	}
	for _, d := range []string{filepath.Join(dir, "new"), filepath.Dir(bigDest)} {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o700 != 0o700 || fi.Mode().Perm()&^0o755 != 0 {
			t.Errorf("%s: %v %v, want a directory created with 0755", d, fi.Mode(), err)
		}
	}
	// No temporary file left anywhere.
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	slices.Sort(names)
	if want := []string{"existing.txt", "flaky.txt", "new/sub/big.bin"}; !slices.Equal(names, want) {
		t.Errorf("files = %v, want %v", names, want)
	}
	if n := flakyRequests.Load(); n != 2 {
		t.Errorf("/flaky fetched %d times, want 2 (cut body retried)", n)
	}
	if !strings.Contains(r.stderr, "fetch:"+bigDest+"="+srv.URL+"/big not ready: HTTP 503 Service Unavailable") {
		t.Errorf("log does not show the 503")
	}
}

func TestFetchOversizeFailsAtOnce(t *testing.T) {
	t.Parallel()
	const max = 1000
	mux := http.NewServeMux()
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(max+1))
		w.Write(make([]byte, max+1))
	})
	mux.HandleFunc("/chunked/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/chunked/"))
		for i := range n {
			w.Write([]byte{byte('a' + i%26)})
			if i%100 == 0 {
				w.(http.Flusher).Flush() // no Content-Length
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/length", fmt.Sprintf("/chunked/%d", max+1)} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dest := filepath.Join(dir, "out")
			target := "fetch:" + dest + "=" + srv.URL + path
			r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "30s", "--max-bytes", strconv.Itoa(max), target)
			if r.code != exitFail {
				t.Fatalf("exit code = %d, want 1", r.code)
			}
			if r.elapsed() > 5*time.Second {
				t.Errorf("took %v: an oversize body must fail at once, not retry until the timeout", r.elapsed())
			}
			want := target + " failed: response body is larger than --max-bytes (1000 bytes)"
			if r.termLog != want {
				t.Errorf("termination log = %q, want %q", r.termLog, want)
			}
			if !strings.Contains(r.stderr, want) {
				t.Errorf("log does not contain %q", want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("directory holds %v, want nothing (no partial file)", entries)
			}
		})
	}
	t.Run("exactly max", func(t *testing.T) {
		t.Parallel()
		dest := filepath.Join(t.TempDir(), "out")
		r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "30s", "--max-bytes", strconv.Itoa(max),
			"fetch:"+dest+"="+srv.URL+fmt.Sprintf("/chunked/%d", max))
		if r.code != exitReady {
			t.Fatalf("exit code = %d, want 0", r.code)
		}
		if fi, err := os.Stat(dest); err != nil || fi.Size() != max {
			t.Errorf("stat %s: %v, %v; want %d bytes", dest, fi, err, max)
		}
	})
}

func TestFetchUnwritableDestinationFailsAtOnce(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "x") }))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The parent "directory" is a regular file.
	target := "fetch:" + file + "/out=" + srv.URL + "/"
	r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "30s", target)
	if r.code != exitFail || r.elapsed() > 5*time.Second {
		t.Fatalf("exit %d after %v, want 1 at once", r.code, r.elapsed())
	}
	if !strings.HasPrefix(r.termLog, target+" failed: cannot create directory for "+file+"/out") {
		t.Errorf("termination log = %q", r.termLog)
	}
}

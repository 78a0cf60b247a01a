package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// writeBody streams a 2xx response body to dest atomically: into a temporary
// file in the same directory, then renamed over dest (mode 0644; missing
// parent directories are created 0755). A body larger than maxBytes, or a
// local file system error, is a *permanentError: retrying cannot help.
// Errors while reading the body are returned as they are and retried.
func writeBody(resp *http.Response, dest string, maxBytes int64) (err error) {
	if resp.ContentLength > maxBytes {
		return tooLarge(maxBytes)
	}
	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot create directory for %s: %v", dest, err)}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, err)}
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	n, err := io.Copy(writerOnly{f}, io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		// Read errors are retried; write errors are not.
		var we *writeError
		if errors.As(err, &we) {
			return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, we.err)}
		}
		return fmt.Errorf("reading body: %w", err)
	}
	if n > maxBytes {
		return tooLarge(maxBytes)
	}
	if err := f.Chmod(0o644); err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, err)}
	}
	if err := f.Sync(); err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, err)}
	}
	if err := f.Close(); err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, err)}
	}
	if err := os.Rename(tmp, dest); err != nil {
		return &permanentError{msg: fmt.Sprintf("cannot write %s: %v", dest, err)}
	}
	// Best effort: make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func tooLarge(maxBytes int64) error {
	return &permanentError{msg: fmt.Sprintf("response body is larger than --max-bytes (%d bytes)", maxBytes)}
}

// writerOnly hides the file's ReadFrom so that io.Copy's errors can be told
// apart: a *writeError comes from the file, anything else from the body.
type writerOnly struct{ f *os.File }

func (w writerOnly) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeError{err: err}
	}
	return n, err
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

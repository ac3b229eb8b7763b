package main

import (
	"fmt"
	"os"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FerretDB v1 keeps a pool of up to 100 SQLite connections per database and gives each one
// `busy_timeout(10000)`. SQLite's own busy handler for that timeout sleeps 1, 2, 5, 10, 15, 20 and
// 25 ms between tries: a handler meant for processes sharing a file. Here every writer is a
// connection of one process, each write transaction holds the lock for well under a millisecond,
// and a writer that lost the lock once slept 1 + 2 + 5 ms before its fourth try while the lock
// was free most of that time. Profiled under the ingest benchmark (docs/BENCHMARKS.md, session 18):
// the store used two thirds of one core while the backend waited 10 ms and more for a one-row
// write, and most commands in flight were asleep in that handler.
//
// This handler keeps the same 10 s timeout but retries after short sleeps: 50 µs doubling up to
// 1 ms. It is installed on every connection the driver opens (a connection hook runs after the
// DSN's pragmas, so it replaces the handler `busy_timeout` set); FERRETDB_SQLITE_BUSY=default
// keeps SQLite's.
const (
	busyFirstSleep = 50 * time.Microsecond
	busyMaxSleep   = time.Millisecond
	busyTimeout    = 10 * time.Second
)

// busySleep is the sleep before try count+2 (SQLite passes the number of tries so far, from 0).
func busySleep(count int32) time.Duration {
	if count >= 16 { // past any doubling that stays under the cap, and no shift overflow
		return busyMaxSleep
	}
	return min(busyFirstSleep<<count, busyMaxSleep)
}

// busyGiveUp is the try at which the sleeps add up to the timeout.
var busyGiveUp = func() int32 {
	var total time.Duration
	var count int32
	for ; total < busyTimeout; count++ {
		total += busySleep(count)
	}
	return count
}()

// busyWaits counts the handler's calls (tests: it is the one SQLite calls).
var busyWaits atomic.Int64

// busyHandler has the C signature SQLite calls (int (*)(void*, int)), as the driver transpiles it.
func busyHandler(_ *libc.TLS, _ uintptr, count int32) int32 {
	busyWaits.Add(1)
	if count >= busyGiveUp {
		return 0
	}
	time.Sleep(busySleep(count))
	return 1
}

// cFunc is the C pointer of a function declared at package level, as the transpiled SQLite
// stores and calls it (the driver's own callbacks are converted the same way).
func cFunc[T any](f T) uintptr {
	return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f}))
}

func installBusyHandler() {
	if os.Getenv("FERRETDB_SQLITE_BUSY") == "default" {
		return
	}
	handler := cFunc(busyHandler)
	sqlite.RegisterConnectionHook(func(conn sqlite.ExecQuerierContext, _ string) error {
		// The driver's connection keeps its sqlite3* and TLS unexported: read, never written.
		v := reflect.ValueOf(conn)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return fmt.Errorf("busy handler: unexpected connection type %T", conn)
		}
		db, tls := v.Elem().FieldByName("db"), v.Elem().FieldByName("tls")
		if !db.IsValid() || db.Kind() != reflect.Uintptr || !tls.IsValid() || tls.Kind() != reflect.Pointer {
			return fmt.Errorf("busy handler: connection %T has no db/tls fields", conn)
		}
		t := (*libc.TLS)(unsafe.Pointer(tls.Pointer()))
		if rc := sqlite3.Xsqlite3_busy_handler(t, uintptr(db.Uint()), handler, 0); rc != sqlite3.SQLITE_OK {
			return fmt.Errorf("busy handler: sqlite3_busy_handler answered %d", rc)
		}
		return nil
	})
}

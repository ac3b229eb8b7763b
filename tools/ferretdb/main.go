// Command ferretdb-launcher runs FerretDB v1 (SQLite backend) as a MongoDB
// wire-protocol server for local development and tests.
//
// It exists because `go install .../cmd/ferretdb` at v1.24.2 panics at start
// (it expects a generated build/version/version.txt); the embeddable package
// has no such requirement.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when FERRETDB_PPROF_ADDR is set
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "./var/ferretdb", "directory holding the SQLite files")
	sqliteParams := flag.String("sqlite-params", os.Getenv("FERRETDB_SQLITE_PARAMS"),
		"extra SQLite URI parameters, e.g. _pragma=wal_autocheckpoint(4000) (experiments; FERRETDB_SQLITE_PARAMS); "+
			"a pragma named there replaces the launcher's default of that name (pragmas.go)")
	flag.Parse()
	installBusyHandler()

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("ferretdb-launcher: bad data dir: %v", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatalf("ferretdb-launcher: cannot create data dir: %v", err)
	}

	// Profiling for benchmarks (`go tool pprof http://ADDR/debug/pprof/profile`): off unless asked.
	if addr := os.Getenv("FERRETDB_PPROF_ADDR"); addr != "" {
		go func() { log.Print(http.ListenAndServe(addr, nil)) }()
	}

	// Info and above to stderr, as FerretDB's default logger writes; attributes formatted only
	// for what is written (logging.go).
	logger := slog.New(&lazyAttrs{inner: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})})

	sqliteURIQuery, err := sqliteQuery(*sqliteParams)
	if err != nil {
		log.Fatalf("ferretdb-launcher: bad SQLite parameters %q: %v", *sqliteParams, err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Logger:   logger,
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  "sqlite",
		// FerretDB wants a directory URI with a trailing slash.
		SQLiteURL: "file:" + abs + "/" + sqliteURIQuery,
	})
	if err != nil {
		log.Fatalf("ferretdb-launcher: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "ferretdb-launcher: listening on %s, data in %s\n", *listen, abs)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb-launcher: %v", err)
	}
}

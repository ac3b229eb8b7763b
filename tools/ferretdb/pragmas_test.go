package main

import (
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

func tempStore(t *testing.T, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.sqlite")+query)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode int
	if err = db.QueryRow(`PRAGMA temp_store`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return mode
}

// The connections FerretDB opens keep their statement journals in memory (temp_store 2), and
// the parameters FERRETDB_SQLITE_PARAMS adds still reach SQLite.
func TestConnectionsKeepStatementJournalsInMemory(t *testing.T) {
	query, err := sqliteQuery("_pragma=wal_autocheckpoint(4000)")
	if err != nil {
		t.Fatal(err)
	}
	if mode := tempStore(t, query); mode != 2 {
		t.Fatalf("temp_store is %d; want 2 (memory)", mode)
	}
	if !strings.Contains(query, "wal_autocheckpoint") {
		t.Fatalf("the given parameter is lost: %q", query)
	}
	// Only a pragma of the same name replaces the default, not one whose name merely starts with it.
	query, err = sqliteQuery("_pragma=temp_store_directory('/tmp')")
	if err != nil || !strings.Contains(query, url.QueryEscape("temp_store(memory)")) {
		t.Fatalf("a longer pragma name dropped the default: %q, %v", query, err)
	}
	if mode := tempStore(t, ""); mode == 2 {
		t.Fatal("without the launcher's pragma temp_store is already memory: this test proves nothing")
	}
}

// A temp_store given in FERRETDB_SQLITE_PARAMS replaces the default (comparisons in benchmarks).
func TestAGivenTempStoreReplacesTheDefault(t *testing.T) {
	query, err := sqliteQuery("_pragma=temp_store(file)")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(query, "temp_store") != 1 {
		t.Fatalf("want one temp_store pragma: %q", query)
	}
	if mode := tempStore(t, query); mode != 1 {
		t.Fatalf("temp_store is %d; want 1 (file)", mode)
	}
}

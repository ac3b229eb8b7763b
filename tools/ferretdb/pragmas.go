package main

import (
	"net/url"
	"strings"
)

// FerretDB runs every write inside an explicit transaction (BEGIN … COMMIT), so SQLite keeps a
// statement journal for each INSERT and UPDATE: the pages the statement changes, to undo that
// statement alone if it fails midway. SQLite holds a statement journal in memory up to 64 KiB
// (SQLITE_STMTJRNL_SPILL) and past that moves it into a temporary file. An update of a ticket
// rewrites its row and its entries in nine indexes (seven declared, FerretDB's `_id` and the
// launcher's), more than that: profiled under the ingest benchmark (docs/BENCHMARKS.md, session
// 19), each such update created, wrote and deleted a temporary file, 7 % of the store's CPU
// samples. With temp_store(memory) statement journals (and SQLite's temporary tables and indexes)
// stay in memory. Nothing durable changes: a statement journal is read only to undo its statement
// within the open transaction, never after a crash; the WAL and its commits are as before. What
// else SQLite keeps there stays small: FerretDB v1 orders rows only by their record id, which is
// indexed, so queries build no temporary sort; building a new index on an existing collection sorts
// its keys in memory now, tens of bytes per document.
var defaultPragmas = []string{"temp_store(memory)"}

// sqliteQuery is the query of the SQLite URI FerretDB opens: the launcher's default pragmas, then
// `params` (FERRETDB_SQLITE_PARAMS), where a pragma of the same name replaces the default.
func sqliteQuery(params string) (string, error) {
	values, err := url.ParseQuery(params)
	if err != nil {
		return "", err
	}
	given := map[string]bool{}
	for _, p := range values["_pragma"] {
		given[pragmaName(p)] = true
	}
	var pragmas []string
	for _, d := range defaultPragmas {
		if !given[pragmaName(d)] {
			pragmas = append(pragmas, d)
		}
	}
	values["_pragma"] = append(pragmas, values["_pragma"]...)
	return "?" + values.Encode(), nil
}

// pragmaName is the name in "name(value)" or "name=value", as SQLite compares it.
func pragmaName(pragma string) string {
	name, _, _ := strings.Cut(pragma, "(")
	name, _, _ = strings.Cut(name, "=")
	return strings.ToLower(strings.TrimSpace(name))
}

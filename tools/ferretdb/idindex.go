package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// FerretDB v1.24.2 pushes `{_id: <string|ObjectId>}` filters down to SQLite as
// `_ferretdb_sjson->'$._id' = ?`, but its own _id index is built on the expression
// `_ferretdb_sjson->"_id"`. SQLite only uses an expression index for the identical expression,
// so every _id lookup scans the table. This keeper adds, next to FerretDB's index, one on the
// exact expression the queries use. It touches no data and no FerretDB metadata.
const idExpr = `_ferretdb_sjson->'$._id'`

func keepIDIndexes(ctx context.Context, dataDir string, every time.Duration) {
	open := map[string]*sql.DB{}
	defer func() {
		for _, db := range open {
			_ = db.Close()
		}
	}()

	ticker := time.NewTicker(every)
	defer ticker.Stop()

	for {
		files, _ := filepath.Glob(filepath.Join(dataDir, "*.sqlite"))
		for _, file := range files {
			db, ok := open[file]
			if !ok {
				var err error
				db, err = sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
				if err != nil {
					log.Printf("ferretdb-launcher: id index keeper: %s: %v", file, err)
					continue
				}
				db.SetMaxOpenConns(1)
				open[file] = db
			}
			if err := ensureIDIndexes(ctx, db); err != nil && ctx.Err() == nil {
				log.Printf("ferretdb-launcher: id index keeper: %s: %v", filepath.Base(file), err)
			}
		}

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func ensureIDIndexes(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx,
		`SELECT m.name FROM sqlite_master m
		 WHERE m.type = 'table' AND m.name NOT LIKE '\_ferretdb\_%' ESCAPE '\' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
		   AND NOT EXISTS (SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.name = m.name || '_iaze_id')`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			_ = rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	_ = rows.Close()

	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (%s)`, table+"_iaze_id", table, idExpr)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
	}
	return nil
}

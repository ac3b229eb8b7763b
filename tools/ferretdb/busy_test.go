package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	installBusyHandler()
	os.Exit(m.Run())
}

// A writer that finds the write lock taken waits in this handler (not SQLite's), and writes once
// the holder commits.
func TestAWriterWaitsInTheHandlerThenWrites(t *testing.T) {
	dsn := "file:" + filepath.Join(t.TempDir(), "t.sqlite") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)"
	holder, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	waiter, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	if _, err = holder.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}

	tx, err := holder.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err = tx.Exec(`INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	before := busyWaits.Load()
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(`INSERT INTO t VALUES (2)`)
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); busyWaits.Load() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the waiting writer never called the busy handler")
		}
	}
	select {
	case err = <-done:
		t.Fatalf("the second writer finished while the lock was held: %v", err)
	default:
	}
	if err = tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err = <-done; err != nil {
		t.Fatalf("the waiting writer failed after the lock was released: %v", err)
	}
	var n int
	if err = holder.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows: %d, %v; want 2", n, err)
	}
}

// The retries start short, never sleep more than busyMaxSleep, and give up once the sleeps add up
// to the timeout busy_timeout(10000) gave, as SQLite's handler does.
func TestTheSleepsAddUpToTheTimeout(t *testing.T) {
	if busySleep(0) != busyFirstSleep || busySleep(1) != 2*busyFirstSleep {
		t.Fatalf("first sleeps %v, %v; want %v doubling", busySleep(0), busySleep(1), busyFirstSleep)
	}
	var total time.Duration
	for count := int32(0); count < busyGiveUp; count++ {
		d := busySleep(count)
		if d <= 0 || d > busyMaxSleep {
			t.Fatalf("sleep %d is %v, outside (0, %v]", count, d, busyMaxSleep)
		}
		total += d
	}
	last := busySleep(busyGiveUp - 1)
	if total < busyTimeout || total-last >= busyTimeout {
		t.Fatalf("sleeps add up to %v; want the first sum reaching %v", total, busyTimeout)
	}
	if busySleep(1<<20) != busyMaxSleep {
		t.Fatalf("a late try sleeps %v, want %v", busySleep(1<<20), busyMaxSleep)
	}
}

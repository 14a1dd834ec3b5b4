package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
)

// The engine's part of a checkpoint restores the same marks whether they
// were saved as plain JSON (now) or compressed in a base64 string (before).
func TestRestoreEngineReadsBothMarkForms(t *testing.T) {
	now := time.Unix(1764000600, 0)
	newEngine := func() *causality.Engine {
		e, err := causality.New(causality.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	src := newEngine()
	if err := src.RestoreState([]byte(`[{"r":"Deployment/ns/web","g":3,"s":1,"t":"0102030405060708090a0b0c0d0e0f10","i":"0102030405060708","c":1764000000}]`)); err != nil {
		t.Fatal(err)
	}
	marks, err := src.SaveState(now, markHorizon, marksBudget)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(marks, []byte("Deployment/ns/web")) {
		t.Fatalf("marks %s lack the root", marks)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(marks)
	zw.Close()
	old, err := json.Marshal(struct {
		Marks []byte `json:"marks"`
	}{z.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := json.Marshal(engineState{Marks: marks})
	if err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string][]byte{"plain": cur, "compressed, base64": old} {
		e := newEngine()
		if _, err := restoreEngine(e, extra); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := e.SaveState(now, markHorizon, marksBudget)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, marks) {
			t.Errorf("%s: restored marks save as %s, want %s", name, got, marks)
		}
	}
	if _, err := restoreEngine(newEngine(), []byte(`{"marks":"not base64!"}`)); err == nil {
		t.Error("bad marks restored without error")
	}
}

// engineState's hand-made JSON is what json.Marshal makes of it.
func TestEngineStateJSON(t *testing.T) {
	for _, s := range []engineState{
		{},
		{Marks: json.RawMessage(`{"marks":[{"r":"Pod/a/b"}]}`)},
		{Open: json.RawMessage(`[{"root":"x"},{"root":"y"}]`)},
		{Marks: json.RawMessage(`{"forgot":5,"marks":[]}`), Open: json.RawMessage(`[]`)},
	} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("appendJSON = %s, json.Marshal = %s", got, want)
		}
	}
}

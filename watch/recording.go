package watch

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
)

// RecordingVersion is written in the first line of every recording.
const RecordingVersion = 1

// Entry is one line of a recording (JSON lines): an Event as the watch saw it,
// or an object of an owner chain (added, changed, or deleted when Deleted is
// set), with the time the recorder saw it.
type Entry struct {
	At     time.Time       `json:"at"`
	Object *Object         `json:"object,omitempty"`
	Event  *eventsv1.Event `json:"event,omitempty"`
}

type header struct {
	Recording int       `json:"kubeOtelBridgeRecording"`
	Started   time.Time `json:"started"`
	Cluster   string    `json:"cluster,omitempty"`
}

// Recorder writes a recording. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	w       *bufio.Writer
	enc     *json.Encoder
	written map[string]Object // objects already written, by UID
	err     error
}

// NewRecorder writes the header line and returns a Recorder.
func NewRecorder(w io.Writer, started time.Time, cluster string) (*Recorder, error) {
	bw := bufio.NewWriter(w)
	r := &Recorder{w: bw, enc: json.NewEncoder(bw), written: map[string]Object{}}
	if err := r.enc.Encode(header{Recording: RecordingVersion, Started: started.UTC(), Cluster: cluster}); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	return r, nil
}

// Object writes o unless the same state was written already.
func (r *Recorder) Object(at time.Time, o *Object) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.written[o.UID]; ok && sameObject(&prev, o) {
		return r.err
	}
	r.written[o.UID] = *o
	return r.write(Entry{At: at.UTC(), Object: o})
}

// Known reports whether an object with the UID was written.
func (r *Recorder) Known(uid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.written[uid]
	return ok
}

// Event writes ev.
func (r *Recorder) Event(at time.Time, ev *eventsv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := ev.DeepCopy()
	cp.ManagedFields = nil
	return r.write(Entry{At: at.UTC(), Event: cp})
}

func (r *Recorder) write(e Entry) error {
	if r.err != nil {
		return r.err
	}
	if err := r.enc.Encode(e); err != nil {
		r.err = fmt.Errorf("recording: %w", err)
	}
	return r.err
}

// Flush writes buffered lines.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	return r.w.Flush()
}

func sameObject(a, b *Object) bool {
	if a.UID != b.UID || a.Name != b.Name || a.Generation != b.Generation || !a.Deleted.Equal(b.Deleted) ||
		a.Traceparent != b.Traceparent || len(a.Owners) != len(b.Owners) {
		return false
	}
	for i := range a.Owners {
		if a.Owners[i] != b.Owners[i] {
			return false
		}
	}
	return true
}

// ReadRecording reads a whole recording. A malformed line is an error that
// names the line; entries are returned in file order.
func ReadRecording(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	var out []Entry
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			// The header is line 1 itself: a leading blank line must not
			// let a file without a header through.
			var h header
			if err := json.Unmarshal(b, &h); err != nil || h.Recording < 1 {
				return nil, errors.New("recording: line 1 is not a kube-otel-bridge recording header")
			}
			if h.Recording > RecordingVersion {
				return nil, fmt.Errorf("recording: version %d is newer than this binary reads (%d)", h.Recording, RecordingVersion)
			}
			continue
		}
		if len(b) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("recording: line %d: %w", line, err)
		}
		if (e.Event == nil) == (e.Object == nil) {
			return nil, fmt.Errorf("recording: line %d: want exactly one of event or object", line)
		}
		if e.Object != nil && e.Object.UID == "" {
			return nil, fmt.Errorf("recording: line %d: object without uid", line)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("recording: line %d: %w", line+1, err)
	}
	if line == 0 {
		return nil, errors.New("recording: empty file")
	}
	return out, nil
}
